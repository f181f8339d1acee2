// What the ticket screens share: their words, SLA urgency, and the live-feed refresh.
import { words } from './i18n'

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

export const ticketState = words('state', {
  submitted: ['待派单', 'To dispatch'], assigned: ['已派单', 'Assigned'], accepted: ['已接单', 'Accepted'],
  on_site: ['处理中', 'On site'], resolved: ['已完成', 'Resolved'], confirmed: ['已评价', 'Rated'],
  followed_up: ['已回访', 'Followed up'], closed: ['已关闭', 'Closed'], returned: ['已退回', 'Returned'],
  waiting_resident: ['待住户回复', 'Waiting for resident'], cancelled: ['已取消', 'Cancelled'],
})
export const ticketKind = words('kind', { repair: ['报修', 'Repair'], complaint: ['投诉建议', 'Complaint'] })
export const ticketPriority = words('priority', {
  emergency: ['特急', 'Emergency'], urgent: ['紧急', 'Urgent'], quick: ['急修', 'Quick'], normal: ['普通', 'Normal'],
  complaint: ['投诉', 'Complaint'],
})
export const ticketAction = words('action', {
  assign: ['派单', 'Dispatch'], reassign: ['改派', 'Reassign'], accept: ['接单', 'Accept'],
  return: ['退回', 'Return'], check_in: ['到场签到', 'Check in'], resolve: ['完工', 'Resolve'],
  ask: ['询问住户', 'Ask resident'], answer: ['回复', 'Answer'], confirm: ['评价', 'Rate'], reopen: ['返工', 'Reopen'],
  cancel: ['取消工单', 'Cancel ticket'], follow_up: ['回访', 'Follow-up call'], close: ['关闭', 'Close'],
  submit: ['提交', 'Reported'], priority: ['改优先级', 'Priority changed'],
})
export const ticketCategory = words('category', {
  gas_leak: ['燃气泄漏', 'Gas leak'], pipe_burst: ['爆管', 'Burst pipe'], lift_trapped: ['电梯困人', 'Trapped in lift'],
  water_leak: ['漏水', 'Water leak'], power_outage: ['停电', 'Power cut'], lift: ['电梯', 'Lift'],
  gate: ['门禁', 'Gate'], drain: ['下水堵塞', 'Blocked drain'], electrical: ['电路', 'Electrical'],
  plumbing: ['水管', 'Plumbing'], lock: ['门锁', 'Lock'], lights: ['照明', 'Lights'],
  door_window: ['门窗', 'Door/window'], wall_ceiling: ['墙面天花', 'Wall/ceiling'],
  green_area: ['绿化', 'Green area'], other: ['其他', 'Other'], hygiene: ['卫生', 'Hygiene'],
  noise: ['噪音', 'Noise'], service: ['服务', 'Service'], building: ['楼宇', 'Building'],
  fire_lane: ['消防通道', 'Fire lane'], facilities: ['设施', 'Facilities'], suggestion: ['建议', 'Suggestion'],
})
export const clockName = words('clock', {
  on_site: ['到场', 'On site'], response: ['响应', 'Response'], followup: ['回访', 'Follow-up'],
})
words('ticket', {
  due_in: ['剩余', 'Left'], overdue: ['已超时', 'Overdue'], no_clock: ['无时限', 'No deadline'],
  urged: ['催单 {n} 次', 'Urged {n}×'],
})
