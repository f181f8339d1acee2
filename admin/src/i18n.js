// Words on screen: Chinese first, English on request. Each screen declares its own words
// with words() next to its code, so screens never edit one shared table.
import { reactive } from 'vue'
import { Locale } from 'vant'
import enUS from 'vant/es/locale/lang/en-US'
import zhCN from 'vant/es/locale/lang/zh-CN'

export const LANGS = { zh: '中文', en: 'English' }
const VANT = { zh: ['zh-CN', zhCN], en: ['en-US', enUS] }
const messages = { zh: {}, en: {} }
export const i18n = reactive({ lang: 'zh' })

/**
 * The one way to declare words: under a prefix, each name once with its Chinese and English
 * side by side, so no language can miss a word the other has.
 *
 *   const ticketState = words('state', { submitted: ['待派单', 'To dispatch'], … })
 *
 * registers `state.submitted` for t(), and answers the table as a label: a server value (a
 * state, a kind, a role) to its words in the page's language, `ticketState(ticket.state)`.
 */
export function words(prefix, table) {
  for (const [name, [zh, en]] of Object.entries(table)) {
    messages.zh[`${prefix}.${name}`] = zh
    messages.en[`${prefix}.${name}`] = en
  }
  return (value, params) => t(`${prefix}.${value}`, params)
}

/** The text for `key` in the chosen language; `{name}` placeholders filled from params. */
export function t(key, params) {
  const text = messages[i18n.lang][key] ?? messages.zh[key] ?? key
  return params ? text.replace(/\{(\w+)\}/g, (_, name) => params[name] ?? '') : text
}

export function setLang(lang) {
  i18n.lang = LANGS[lang] ? lang : 'zh'
  localStorage.setItem('xiaoqu.lang', i18n.lang)
  document.documentElement.lang = i18n.lang === 'zh' ? 'zh-CN' : 'en'
  Locale.use(...VANT[i18n.lang])
}

setLang(localStorage.getItem('xiaoqu.lang') || 'zh')

words('app', { title: ['小区物业', 'Property office'] })
words('tab', {
  today: ['今日', 'Today'], tickets: ['工单', 'Tickets'], gates: ['门禁', 'Gates'], people: ['住户', 'People'],
  more: ['更多', 'More'],
})
words('more', {
  access_log: ['通行记录', 'Access log'], kpi: ['考核指标', 'KPIs'], notices: ['公告', 'Notices'],
  surveys: ['满意度调查', 'Surveys'], equipment: ['设备巡检', 'Equipment'], decoration: ['装修管理', 'Decoration permits'], settings: ['设置', 'Settings'], language: ['语言 Language', 'Language 语言'],
  community: ['当前小区', 'Community'], sign_out: ['退出登录', 'Sign out'], signed_in_as: ['登录账号', 'Signed in as'],
})
words('offline', { banner: ['网络连接已断开，正在重连…', 'Connection lost, reconnecting…'] })
words('common', {
  retry: ['重试', 'Retry'], loading: ['加载中…', 'Loading…'], empty: ['暂无', 'Nothing here'],
  cancel: ['取消', 'Cancel'], confirm: ['确定', 'OK'], back: ['返回', 'Back'], save: ['保存', 'Save'],
  coming: ['此页面正在建设中', 'This screen is being built'],
})
words('switch', { title: ['切换小区', 'Switch community'] })
export const roleName = words('role', {
  admin: ['管理员', 'Admin'], manager: ['经理', 'Manager'], customer_service: ['客服', 'Customer service'],
  security: ['保安', 'Security'], security_lead: ['保安队长', 'Security lead'], maintenance: ['维修', 'Maintenance'],
})
