// Words shared by the Gates screen's parts (board, remote open, alarms).
import { words } from '../../i18n'
import '../../alarm-words'

words('gates', {
  board: ['门禁状态', 'Status'], alarms: ['告警', 'Alarms'], online: ['在线', 'online'], offline: ['离线', 'offline'],
  no_bridge: ['未接入', 'no bridge'], last_seen: ['最后在线 {time}', 'last seen {time}'],
  none: ['还没有门禁', 'No gates yet'], open: ['远程开门', 'Open remotely'], mode: ['切换模式', 'Change mode'],
  community_mode: ['全小区模式', 'Whole community'], open_title: ['远程开门：{gate}', 'Open remotely: {gate}'],
  reason: ['开门理由', 'Reason'], reason_required: ['请填写开门理由', 'Say why'],
  mode_title: ['切换模式：{scope}', 'Change mode: {scope}'], mode_reason: ['原因', 'Reason'],
  mode_set: ['已切换为：{mode}', 'Now: {mode}'], progress: ['开门进度', 'Opening'], close_progress: ['关闭', 'Close'],
})
export const gateMode = words('mode', {
  normal: ['正常', 'Normal'], locked: ['封闭管控', 'Lockdown'], open: ['常开（消防）', 'Held open (fire)'],
})
export const openLevel = words('level', {
  sent: ['已发送', 'Sent'], received: ['门禁已收到', 'Received'], actuated: ['已执行开锁', 'Unlocked'],
  opened: ['门已打开', 'Door opened'], not_opened: ['门未打开', 'Door did not open'],
  refused: ['门禁拒绝执行', 'Gate refused'], gate_offline: ['门禁离线', 'Gate offline'], no_ack: ['门禁无回应', 'No answer'],
  waiting: ['等待中', 'Waiting'], result: ['结果', 'Result'],
})
words('alarms', {
  none: ['没有未处理的告警', 'No open alarms'], show_closed: ['显示已关闭', 'Show closed'],
  acknowledge: ['确认', 'Acknowledge'], dispatch: ['派人', 'Dispatch'], close: ['关闭', 'Close'],
  note: ['备注', 'Note'], note_required: ['请填写备注', 'Add a note'],
  acknowledge_title: ['确认告警', 'Acknowledge the alarm'],
  close_title: ['关闭告警（处理结果）', 'Close the alarm (what was done)'],
  dispatch_title: ['派给 {name}', 'Send {name}'], choose_person: ['派给谁', 'Send whom'],
  assignee: ['处理人：{name}', 'Handled by {name}'], to_me: ['派给我', 'for me'],
  whole_community: ['全小区', 'Whole community'],
})
