// Words shared by the notice and survey screens: states, actions, audience.
import { addMessages } from './i18n'

addMessages({
  zh: { 'nstate.draft': '草稿', 'nstate.scheduled': '待发布', 'nstate.published': '已发布', 'nstate.withdrawn': '已撤回',
    'nstate.open': '进行中', 'nstate.closed': '已结束',
    'naction.edit': '编辑', 'naction.schedule': '定时发布', 'naction.publish': '立即发布', 'naction.pin': '置顶',
    'naction.unpin': '取消置顶', 'naction.withdraw': '撤回', 'naction.open': '开始调查', 'naction.close': '结束调查',
    'naction.create': '创建',
    'audience.label': '发布范围', 'audience.places': '楼栋/单元', 'audience.places_hint': '如 1, 2-1；留空为全小区',
    'audience.who': '对象', 'audience.residents': '全体住户（含租户）', 'audience.owners': '仅业主',
    'audience.everywhere': '全小区', 'notice.urgent': '紧急', 'notice.pinned': '置顶' },
  en: { 'nstate.draft': 'Draft', 'nstate.scheduled': 'Scheduled', 'nstate.published': 'Published', 'nstate.withdrawn': 'Withdrawn',
    'nstate.open': 'Open', 'nstate.closed': 'Closed',
    'naction.edit': 'Edit', 'naction.schedule': 'Schedule', 'naction.publish': 'Publish now', 'naction.pin': 'Pin',
    'naction.unpin': 'Unpin', 'naction.withdraw': 'Withdraw', 'naction.open': 'Open survey', 'naction.close': 'Close survey',
    'naction.create': 'Create',
    'audience.label': 'Audience', 'audience.places': 'Buildings/units', 'audience.places_hint': 'e.g. 1, 2-1; empty: whole community',
    'audience.who': 'Who', 'audience.residents': 'Everyone living there', 'audience.owners': 'Owners only',
    'audience.everywhere': 'Whole community', 'notice.urgent': 'Urgent', 'notice.pinned': 'Pinned' },
})

/** "1, 2-1" → ["1", "2-1"] */
export const placesOf = (text) => text.split(/[,，\s]+/).map((p) => p.trim()).filter(Boolean)
