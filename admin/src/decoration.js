// Words the decoration permit (装修) screens share: states, actions, checklist, forbidden works.
import { words } from './i18n'

// The order the list shows them in: what waits for the office first.
export const PERMIT_STATES = ['submitted', 'approved', 'suspended', 'completed', 'rejected', 'withdrawn']

export const permitState = words('permit_state', {
  submitted: ['待审批', 'To decide'], approved: ['施工中', 'Working'], suspended: ['已停工', 'Suspended'],
  completed: ['已验收', 'Accepted'], rejected: ['已驳回', 'Rejected'], withdrawn: ['已撤回', 'Withdrawn'],
})
export const permitAction = words('permit_action', {
  create: ['提交申请', 'Applied'], approve: ['批准', 'Approve'], reject: ['驳回', 'Reject'],
  withdraw: ['撤回', 'Withdraw'], inspect: ['巡查', 'Inspect'], suspend: ['停工', 'Suspend'],
  resume: ['复工', 'Resume'], accept: ['验收', 'Accept (final)'],
})
export const permitCheck = words('permit_check', {
  fire_safety: ['消防安全', 'Fire safety'], waste_removal: ['垃圾清运', 'Waste removal'],
  noise_hours: ['噪音时段', 'Noise hours'], structure_untouched: ['结构未改动', 'Structure untouched'],
  common_areas_clean: ['公共区域整洁', 'Common areas clean'], ok: ['正常', 'OK'], problem: ['有问题', 'Problem'],
})
export const forbiddenWork = words('forbidden_work', {
  load_bearing_walls: ['不拆改承重墙', 'No load-bearing walls touched'],
  closing_balconies: ['不封闭阳台', 'No closing balconies'],
  moving_gas_pipes: ['不移动燃气管道', 'No moving gas pipes'],
  smart_system_wiring: ['不改动智能化线路', 'No smart-system wiring changed'],
})
