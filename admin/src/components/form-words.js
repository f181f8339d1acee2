// Words every form of the People and Settings screens uses.
import { addMessages } from '../i18n'

addMessages({
  zh: { 'form.required': '请填写', 'form.close': '关闭', 'form.reason': '原因', 'form.reason_required': '请填写原因' },
  en: { 'form.required': 'Required', 'form.close': 'Close', 'form.reason': 'Reason', 'form.reason_required': 'Give a reason' },
})
