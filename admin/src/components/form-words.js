// Words every form of the People and Settings screens uses.
import { words } from '../i18n'

words('form', {
  required: ['请填写', 'Required'], close: ['关闭', 'Close'], reason: ['原因', 'Reason'],
  reason_required: ['请填写原因', 'Give a reason'],
})
