// Words shared by the People screen's parts.
import { addMessages } from '../../i18n'
import '../form-words'

addMessages({
  zh: {
    'relation.owner': '业主', 'relation.family': '家属', 'relation.tenant': '租户',
    'pass.active': '有效', 'pass.not_yet_valid': '未生效', 'pass.expired': '已过期',
    'pass.cancelled': '已取消', 'pass.used_up': '次数已用完',
    'people.name': '姓名', 'people.phone': '手机', 'people.room': '房号', 'people.purpose': '事由',
    'people.room_hint': '如 3-2-1201', 'people.gates': '门禁',
  },
  en: {
    'relation.owner': 'Owner', 'relation.family': 'Family', 'relation.tenant': 'Tenant',
    'pass.active': 'Valid', 'pass.not_yet_valid': 'Not yet valid', 'pass.expired': 'Expired',
    'pass.cancelled': 'Cancelled', 'pass.used_up': 'Used up',
    'people.name': 'Name', 'people.phone': 'Phone', 'people.room': 'Room', 'people.purpose': 'Purpose',
    'people.room_hint': 'e.g. 3-2-1201', 'people.gates': 'Gates',
  },
})
