// Guard patrols (巡更, docs/patrols.md): the words every patrol screen shares.
import { words } from './i18n'
import { session } from './session'

words('more', {
  patrols: ['巡更管理', 'Patrols'], patrol_check_in: ['巡更打卡', 'Patrol check-in'],
})
words('gates', {
  patrols: ['巡更', 'Patrols'],
})
words('patrol', {
  plans: ['计划', 'Plans'], checkpoints: ['巡更点', 'Checkpoints'], routes: ['路线', 'Routes'],
  alarms: ['巡更告警', 'Patrol alarms'],
  alarm_label: ['{plan} · {start} 开始 · 已巡 {done}/{of}', '{plan} · started {start} · {done}/{of} done'],
  none: ['暂无巡更告警', 'No patrol alarms'], code: ['编号', 'Number'], name: ['名称', 'Name'], place: ['位置', 'Place'],
  place_hint: ['如 1-1（可不填）', 'e.g. 1-1 (optional)'], checklist: ['检查项', 'Checklist'],
  checklist_hint: ['每行一项，如：灯光', 'One item a line, e.g. lights'],
  add_checkpoint: ['添加巡更点', 'Add a checkpoint'], add_route: ['添加路线', 'Add a route'],
  route_order: ['按顺序点选巡更点', 'Tap the checkpoints in order'], add_plan: ['添加计划', 'Add a plan'],
  route: ['路线', 'Route'], starts_at: ['首轮开始', 'First round'], every: ['间隔（分钟）', 'Every (minutes)'],
  window: ['时段（分钟）', 'Window (minutes)'], late_after: ['迟到（分钟）', 'Late after (minutes)'],
  late_hint: ['开始后多久未打卡算迟到（可不填）', 'Not started by then is late (optional)'], assignee: ['指派', 'Assign to'],
  role: ['角色', 'Role'], person: ['人员编号', 'Staff id'], print: ['打印巡更点二维码', 'Print checkpoint QR codes'],
  sheet: ['巡更点二维码', 'Checkpoint QR codes'],
  every_label: ['每 {every} 分钟 · 时段 {window} 分钟', 'Every {every} min · window {window} min'],
  stats: ['近 7 天：完成 {completed}/{rounds} · 准时 {on_time} · 发现问题 {problems}', 'Last 7 days: {completed}/{rounds} done · {on_time} on time · {problems} problems'],
  rounds: ['巡更记录', 'Rounds'], visit: ['{n}. {name}', '{n}. {name}'],
  make_ticket: ['报修', 'Report repair'], ticket: ['报修单', 'Repair ticket'],
  required: ['请填写必填项', 'Fill in the required fields'], plan: ['巡更计划', 'Patrol plan'], scan: ['扫码打卡', 'Scan'],
  type_code: ['输入巡更点编号', 'Checkpoint number'],
  found: ['已识别巡更点：{name}（{code}）', 'Checkpoint: {name} ({code})'],
  unknown_tag: ['不是本小区的巡更点二维码', 'Not a checkpoint code of this community'],
  next: ['下一个：{name}', 'Next: {name}'], progress: ['本轮进度 {done}/{of}', 'This round {done}/{of}'],
  no_round: ['当前没有进行中的巡更', 'No round is open now'], note: ['备注', 'Note'], photo: ['照片', 'Photo'],
  send: ['提交打卡', 'Check in'], sent: ['已打卡：{name}', 'Checked in: {name}'],
  done: ['本轮巡更已完成', 'Round completed'], wrong_order: ['顺序不对，应先到：{name}', 'Wrong order: go to {name} first'],
  outside_window: ['现在不在巡更时段内', 'No patrol window is open now'], location: ['已记录位置', 'Location recorded'],
  no_location: ['未获取位置', 'No location'],
  choose_plan: ['选择计划', 'Choose a plan'],
  photo_failed: ['照片未上传：{words}', 'Photo not sent: {words}'],
})
words('patrol.alarm', {
  late: ['巡更迟到', 'Patrol late'], missed: ['巡更漏巡', 'Patrol missed'],
})
words('patrol.state', {
  open: ['进行中', 'Open'], completed: ['已完成', 'Completed'], missed: ['漏巡', 'Missed'],
})

export const patrolBase = () => `/api/communities/${session.communityId}`
