// Words on screen: Chinese first, English on request. Each screen adds its own words
// with addMessages() next to its code, so screens never edit one shared table.
import { reactive } from 'vue'
import { Locale } from 'vant'
import enUS from 'vant/es/locale/lang/en-US'
import zhCN from 'vant/es/locale/lang/zh-CN'

export const LANGS = { zh: '中文', en: 'English' }
const VANT = { zh: ['zh-CN', zhCN], en: ['en-US', enUS] }
const messages = { zh: {}, en: {} }
export const i18n = reactive({ lang: 'zh' })

export function addMessages(table) {
  for (const lang of Object.keys(messages)) Object.assign(messages[lang], table[lang])
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

addMessages({
  zh: {
    'app.title': '小区物业', 'tab.today': '今日', 'tab.tickets': '工单', 'tab.gates': '门禁',
    'tab.people': '住户', 'tab.more': '更多', 'more.access_log': '通行记录', 'more.kpi': '考核指标', 'more.notices': '公告', 'more.surveys': '满意度调查', 'more.equipment': '设备巡检',
    'more.settings': '设置', 'more.language': '语言 Language', 'more.community': '当前小区',
    'more.sign_out': '退出登录', 'more.signed_in_as': '登录账号', 'offline.banner': '网络连接已断开，正在重连…',
    'common.retry': '重试', 'common.loading': '加载中…', 'common.empty': '暂无', 'common.cancel': '取消',
    'common.confirm': '确定', 'common.back': '返回', 'common.save': '保存', 'common.coming': '此页面正在建设中',
    'switch.title': '切换小区', 'role.admin': '管理员', 'role.manager': '经理',
    'role.customer_service': '客服', 'role.security': '保安', 'role.maintenance': '维修',
  },
  en: {
    'app.title': 'Property office', 'tab.today': 'Today', 'tab.tickets': 'Tickets', 'tab.gates': 'Gates',
    'tab.people': 'People', 'tab.more': 'More', 'more.access_log': 'Access log', 'more.kpi': 'KPIs', 'more.notices': 'Notices', 'more.surveys': 'Surveys', 'more.equipment': 'Equipment',
    'more.settings': 'Settings', 'more.language': 'Language 语言', 'more.community': 'Community',
    'more.sign_out': 'Sign out', 'more.signed_in_as': 'Signed in as',
    'offline.banner': 'Connection lost, reconnecting…', 'common.retry': 'Retry',
    'common.loading': 'Loading…', 'common.empty': 'Nothing here', 'common.cancel': 'Cancel',
    'common.confirm': 'OK', 'common.back': 'Back', 'common.save': 'Save', 'common.coming': 'This screen is being built',
    'switch.title': 'Switch community', 'role.admin': 'Admin', 'role.manager': 'Manager',
    'role.customer_service': 'Customer service', 'role.security': 'Security',
    'role.maintenance': 'Maintenance',
  },
})
