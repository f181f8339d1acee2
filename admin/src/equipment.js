// Words and small helpers of the equipment screens (巡检): kinds, states, actions (the
// checklist items' words come from the server, with each item: models/equipment.py).
import { i18n, words } from './i18n'

words('eqkind', {
  fire_extinguisher: ['灭火器', 'Fire extinguisher'], hydrant: ['消火栓', 'Hydrant'],
  smoke_detector: ['烟感探测器', 'Smoke detector'], emergency_light: ['应急灯', 'Emergency light'],
  pump: ['水泵', 'Pump'], elevator: ['电梯', 'Elevator'], gate: ['门禁/道闸', 'Gate'], other: ['其他', 'Other'],
})
words('eqstate', { in_service: ['在用', 'In service'], faulty: ['故障', 'Faulty'], retired: ['已报废', 'Retired'] })
words('eqaction', {
  create: ['登记', 'Registered'], edit: ['修改', 'Edited'], check: ['巡检正常', 'Inspected: OK'],
  fault: ['巡检发现问题', 'Inspected: problem'], repair: ['修复', 'Repaired'], retire: ['报废', 'Retired'],
})
words('eq', {
  overdue_days: ['逾期 {n} 天', '{n} d overdue'], due: ['{date} 到期', 'due {date}'],
  expired: ['已过有效期', 'Expired'], inspect: ['扫码巡检', 'Scan to inspect'], register: ['登记设备', 'Register an item'],
  all: ['全部', 'All'], overdue: ['逾期', 'Overdue'], kind: ['类型', 'Kind'], state: ['状态', 'State'],
  any: ['不限', 'Any'], name: ['名称', 'Name'], tag_code: ['标签编号', 'Tag code'], place: ['位置', 'Place'],
  serial: ['出厂编号', 'Serial'], model: ['型号', 'Model'], expires_on: ['有效期至', 'Valid until'],
  interval: ['巡检周期（天）', 'Every (days)'], interval_default: ['默认 {n} 天', 'default {n} d'],
  every: ['每 {n} 天', 'every {n} d'], last_check: ['上次巡检', 'Last check'], next_due: ['下次到期', 'Next due'],
  never: ['尚未巡检', 'Not yet inspected'], save: ['登记', 'Register'],
  required: ['请填写名称和标签编号', 'Name and tag code are required'], inspections: ['巡检记录', 'Inspections'],
  history: ['操作记录', 'History'], note: ['说明', 'Note'],
  note_hint: ['有问题时请写明', 'Say what is wrong'],
  scan_hint: ['扫描设备上的二维码，或输入标签编号', 'Scan the code on the item, or type its tag code'], find: ['查找', 'Find'],
  submit: ['提交巡检', 'Submit'], saved_ok: ['已记录：正常', 'Recorded: OK'],
  saved_problem: ['已记录：有问题，设备已标为故障', 'Recorded: problem, the item is marked faulty'],
  to_ticket: ['转报修', 'Make a repair ticket'], ticket: ['查看工单', 'Open the ticket'],
  ticket_made: ['已生成报修工单', 'Repair ticket made'], repair: ['修复', 'Repaired'],
  repair_label: ['维修内容', 'What was done'], repair_required: ['请写明维修内容', 'Say what was done'],
  retire: ['报废', 'Retire'], retire_label: ['报废原因', 'Why'], retire_required: ['请写明报废原因', 'Say why'],
  add_photos: ['添加照片', 'Add photos'], photo: ['照片 {n}', 'Photo {n}'],
  open_findings: ['未处理问题', 'Open findings'], overdue_count: ['逾期设备', 'Overdue equipment'],
  count: ['{n} 台', '{n}'],
  none_overdue: ['没有逾期设备', 'Nothing overdue'],
  edit: ['修改信息', 'Edit'], edited: ['已保存', 'Saved'],
  sheet: ['设备二维码', 'Equipment QR codes'], print: ['打印设备二维码', 'Print the QR codes'],
  import: ['导入台账', 'Import a sheet'], import_hint: ['.xlsx 或 .csv：类型、名称、标签编号（必填），位置、有效期至、巡检周期…',
    '.xlsx or .csv: kind, name, tag code (required), place, valid until, interval…'],
  imported: ['新增 {created} 台，已有 {existing} 台，{failed} 行有误', '{created} added, {existing} already there, {failed} rows refused'],
  import_row: ['第 {row} 行 {header}：{problem}', 'Row {row} {header}: {problem}'],
})

export const KINDS = ['fire_extinguisher', 'hydrant', 'smoke_detector', 'emergency_light', 'pump', 'elevator', 'gate', 'other']
export const STATES = ['in_service', 'faulty', 'retired']
export const equipmentBase = (communityId) => `/api/communities/${communityId}/equipment`
// A checklist item's words, as the server gives them with the item ([Chinese, English]).
export const checkWord = (item, name) => item.check_words?.[name]?.[i18n.lang === 'zh' ? 0 : 1] ?? name
