// The words for each alarm kind and state (models/gate_alarms.py names them), shared by every
// screen that shows alarms, so Today and the guard console say the same thing.
import { words } from './i18n'

export const alarmKind = words('alarm', {
  bridge_offline: ['门禁离线', 'Gate offline'], door_forced: ['门被强行打开', 'Door forced'],
  door_held: ['门长时间未关', 'Door held open'], tamper: ['防拆报警', 'Tamper'], power_lost: ['断电', 'Power lost'],
  buffer_high: ['门禁缓存将满', 'Bridge buffer filling'], clock_drift: ['时钟偏差', 'Clock drift'],
  fire_release: ['消防联动开门', 'Fire release'], invalid_offline_claim: ['离线放行无效', 'Invalid offline entry'],
  double_use: ['通行码重复使用', 'Code used twice'], code_guessing: ['疑似猜码', 'Code guessing'],
  mode_changed: ['模式变更', 'Mode changed'],
})
export const alarmState = words('alarm_state', {
  open: ['未处理', 'open'], acknowledged: ['处理中', 'in hand'], closed: ['已关闭', 'closed'],
})
