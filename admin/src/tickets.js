// What the ticket screens share: their words, SLA urgency, and the live-feed refresh.
import { addMessages } from './i18n'

export const OPEN_STATES = ['submitted', 'assigned', 'accepted', 'on_site', 'returned',
  'waiting_resident', 'resolved', 'confirmed', 'followed_up']

/** The earliest deadline among the ticket's running SLA clocks (null when none runs). */
export function nextDue(ticket) {
  const running = Object.values(ticket.clocks || {})
    .filter((c) => c && !c.stopped_at && !c.paused).map((c) => c.due)
  return running.sort()[0] ?? null
}

/** Most urgent first: running deadlines soonest first, then tickets without one, newest first. */
export function byUrgency(a, b) {
  const da = nextDue(a)
  const db = nextDue(b)
  if (da && db) return da < db ? -1 : da > db ? 1 : 0
  if (da || db) return da ? -1 : 1
  return a.created_at < b.created_at ? 1 : -1
}

addMessages({
  zh: {
    'state.submitted': '待派单', 'state.assigned': '已派单', 'state.accepted': '已接单',
    'state.on_site': '处理中', 'state.resolved': '已完成', 'state.confirmed': '已评价',
    'state.followed_up': '已回访', 'state.closed': '已关闭', 'state.returned': '已退回',
    'state.waiting_resident': '待住户回复', 'state.cancelled': '已取消',
    'kind.repair': '报修', 'kind.complaint': '投诉建议',
    'priority.emergency': '特急', 'priority.urgent': '紧急', 'priority.quick': '急修',
    'priority.normal': '普通', 'priority.complaint': '投诉',
    'action.assign': '派单', 'action.reassign': '改派', 'action.accept': '接单', 'action.return': '退回',
    'action.check_in': '到场签到', 'action.resolve': '完工', 'action.ask': '询问住户',
    'action.answer': '回复', 'action.confirm': '评价', 'action.reopen': '返工', 'action.cancel': '取消工单',
    'action.follow_up': '回访', 'action.close': '关闭', 'action.submit': '提交', 'action.priority': '改优先级',
    'category.gas_leak': '燃气泄漏', 'category.pipe_burst': '爆管', 'category.lift_trapped': '电梯困人',
    'category.water_leak': '漏水', 'category.power_outage': '停电', 'category.lift': '电梯',
    'category.gate': '门禁', 'category.drain': '下水堵塞', 'category.electrical': '电路',
    'category.plumbing': '水管', 'category.lock': '门锁', 'category.lights': '照明',
    'category.door_window': '门窗', 'category.wall_ceiling': '墙面天花', 'category.green_area': '绿化',
    'category.other': '其他', 'category.hygiene': '卫生', 'category.noise': '噪音',
    'category.service': '服务', 'category.building': '楼宇', 'category.fire_lane': '消防通道',
    'category.facilities': '设施', 'category.suggestion': '建议',
    'clock.on_site': '到场', 'clock.response': '响应', 'clock.followup': '回访',
    'ticket.due_in': '剩余', 'ticket.overdue': '已超时', 'ticket.no_clock': '无时限',
    'ticket.urged': '催单 {n} 次',
  },
  en: {
    'state.submitted': 'To dispatch', 'state.assigned': 'Assigned', 'state.accepted': 'Accepted',
    'state.on_site': 'On site', 'state.resolved': 'Resolved', 'state.confirmed': 'Rated',
    'state.followed_up': 'Followed up', 'state.closed': 'Closed', 'state.returned': 'Returned',
    'state.waiting_resident': 'Waiting for resident', 'state.cancelled': 'Cancelled',
    'kind.repair': 'Repair', 'kind.complaint': 'Complaint',
    'priority.emergency': 'Emergency', 'priority.urgent': 'Urgent', 'priority.quick': 'Quick',
    'priority.normal': 'Normal', 'priority.complaint': 'Complaint',
    'action.assign': 'Dispatch', 'action.reassign': 'Reassign', 'action.accept': 'Accept',
    'action.return': 'Return', 'action.check_in': 'Check in', 'action.resolve': 'Resolve',
    'action.ask': 'Ask resident', 'action.answer': 'Answer', 'action.confirm': 'Rate',
    'action.reopen': 'Reopen', 'action.cancel': 'Cancel ticket', 'action.follow_up': 'Follow-up call',
    'action.close': 'Close', 'action.submit': 'Reported', 'action.priority': 'Priority changed',
    'category.gas_leak': 'Gas leak', 'category.pipe_burst': 'Burst pipe', 'category.lift_trapped': 'Trapped in lift',
    'category.water_leak': 'Water leak', 'category.power_outage': 'Power cut', 'category.lift': 'Lift',
    'category.gate': 'Gate', 'category.drain': 'Blocked drain', 'category.electrical': 'Electrical',
    'category.plumbing': 'Plumbing', 'category.lock': 'Lock', 'category.lights': 'Lights',
    'category.door_window': 'Door/window', 'category.wall_ceiling': 'Wall/ceiling',
    'category.green_area': 'Green area', 'category.other': 'Other', 'category.hygiene': 'Hygiene',
    'category.noise': 'Noise', 'category.service': 'Service', 'category.building': 'Building',
    'category.fire_lane': 'Fire lane', 'category.facilities': 'Facilities', 'category.suggestion': 'Suggestion',
    'clock.on_site': 'On site', 'clock.response': 'Response', 'clock.followup': 'Follow-up',
    'ticket.due_in': 'Left', 'ticket.overdue': 'Overdue', 'ticket.no_clock': 'No deadline',
    'ticket.urged': 'Urged {n}×',
  },
})
