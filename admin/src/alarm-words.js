// The words for each alarm kind (models/gate_alarms.py names them), shared by every screen
// that shows alarms, so Today and the guard console say the same thing.
import { addMessages } from './i18n'

addMessages({
  zh: {
    'alarm.bridge_offline': '门禁离线', 'alarm.door_forced': '门被强行打开', 'alarm.door_held': '门长时间未关',
    'alarm.tamper': '防拆报警', 'alarm.power_lost': '断电', 'alarm.buffer_high': '门禁缓存将满',
    'alarm.clock_drift': '时钟偏差', 'alarm.fire_release': '消防联动开门',
    'alarm.invalid_offline_claim': '离线放行无效', 'alarm.double_use': '通行码重复使用',
    'alarm.code_guessing': '疑似猜码', 'alarm.mode_changed': '模式变更',
  },
  en: {
    'alarm.bridge_offline': 'Gate offline', 'alarm.door_forced': 'Door forced', 'alarm.door_held': 'Door held open',
    'alarm.tamper': 'Tamper', 'alarm.power_lost': 'Power lost', 'alarm.buffer_high': 'Bridge buffer filling',
    'alarm.clock_drift': 'Clock drift', 'alarm.fire_release': 'Fire release',
    'alarm.invalid_offline_claim': 'Invalid offline entry', 'alarm.double_use': 'Code used twice',
    'alarm.code_guessing': 'Code guessing', 'alarm.mode_changed': 'Mode changed',
  },
})
