// Words shared by the People screen's parts.
import { words } from '../../i18n'
import '../form-words'

export const relationName = words('relation', {
  owner: ['业主', 'Owner'], family: ['家属', 'Family'], tenant: ['租户', 'Tenant'],
})
export const passState = words('pass', {
  active: ['有效', 'Valid'], not_yet_valid: ['未生效', 'Not yet valid'], expired: ['已过期', 'Expired'],
  cancelled: ['已取消', 'Cancelled'], used_up: ['次数已用完', 'Used up'],
})
words('people', {
  name: ['姓名', 'Name'], phone: ['手机', 'Phone'], room: ['房号', 'Room'], purpose: ['事由', 'Purpose'],
  room_hint: ['如 3-2-1201', 'e.g. 3-2-1201'], gates: ['门禁', 'Gates'],
})
