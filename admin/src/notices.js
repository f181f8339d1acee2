// Words shared by the notice and survey screens: states, actions, audience.
import { words } from './i18n'

export const noticeState = words('nstate', {
  draft: ['草稿', 'Draft'], scheduled: ['待发布', 'Scheduled'], published: ['已发布', 'Published'],
  withdrawn: ['已撤回', 'Withdrawn'], open: ['进行中', 'Open'], closed: ['已结束', 'Closed'],
})
export const noticeAction = words('naction', {
  edit: ['编辑', 'Edit'], schedule: ['定时发布', 'Schedule'], publish: ['立即发布', 'Publish now'], pin: ['置顶', 'Pin'],
  unpin: ['取消置顶', 'Unpin'], withdraw: ['撤回', 'Withdraw'], open: ['开始调查', 'Open survey'],
  close: ['结束调查', 'Close survey'], create: ['创建', 'Create'],
})
words('audience', {
  label: ['发布范围', 'Audience'], places: ['楼栋/单元', 'Buildings/units'],
  places_hint: ['如 1, 2-1；留空为全小区', 'e.g. 1, 2-1; empty: whole community'], who: ['对象', 'Who'],
  residents: ['全体住户（含租户）', 'Everyone living there'], owners: ['仅业主', 'Owners only'],
  everywhere: ['全小区', 'Whole community'],
})
words('notice', { urgent: ['紧急', 'Urgent'], pinned: ['置顶', 'Pinned'] })

/** "1, 2-1" → ["1", "2-1"] */
export const placesOf = (text) => text.split(/[,，\s]+/).map((p) => p.trim()).filter(Boolean)
