// Dates and times as the community's clock shows them (its time zone, else China's).
import { onUnmounted, ref } from 'vue'
import { community } from './session'
import { i18n } from './i18n'

const DEFAULT_ZONE = 'Asia/Shanghai'
const formats = new Map()

function zoneOf(c) {
  return c?.time_zone || DEFAULT_ZONE // IANA name, from /api/me
}

function formatter(kind) {
  const zone = zoneOf(community.value)
  const key = `${i18n.lang}|${zone}|${kind}`
  if (!formats.has(key)) {
    const options = {
      datetime: { month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' },
      time: { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' },
      date: { year: 'numeric', month: '2-digit', day: '2-digit' },
    }[kind]
    formats.set(key, new Intl.DateTimeFormat(i18n.lang === 'zh' ? 'zh-CN' : 'en-GB', { ...options, timeZone: zone }))
  }
  return formats.get(key)
}

export const formatDateTime = (iso) => (iso ? formatter('datetime').format(new Date(iso)) : '')
export const formatTime = (iso) => (iso ? formatter('time').format(new Date(iso)) : '')
export const formatDate = (iso) => (iso ? formatter('date').format(new Date(iso)) : '')

/** "YYYY-MM-DD" of today on the community's calendar. */
export const localToday = () => localDay()

/** "YYYY-MM-DD" of a moment (default: now) on the community's calendar. */
export function localDay(iso) {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-CA', { timeZone: zoneOf(community.value), year: 'numeric', month: '2-digit', day: '2-digit' })
      .formatToParts(iso ? new Date(iso) : new Date()).map((p) => [p.type, p.value]))
  return `${parts.year}-${parts.month}-${parts.day}`
}

/** "-1:05" / "12:30" / "2d 3h": time left until `iso`, negative when overdue. */
export function countdown(iso, now) {
  const seconds = Math.round((new Date(iso) - now) / 1000)
  const sign = seconds < 0 ? '-' : ''
  let s = Math.abs(seconds)
  if (s >= 86400) return `${sign}${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`
  const h = Math.floor(s / 3600)
  s %= 3600
  const mm = String(Math.floor(s / 60)).padStart(h ? 2 : 1, '0')
  const ss = String(s % 60).padStart(2, '0')
  return `${sign}${h ? `${h}:` : ''}${mm}:${ss}`
}

/** A ref holding the current time in ms, ticking every second while the component lives. */
export function useNow() {
  const now = ref(Date.now())
  const timer = setInterval(() => { now.value = Date.now() }, 1000)
  onUnmounted(() => clearInterval(timer))
  return now
}

/** A date ("2026-12-02") and time ("08:00:00") on the community's clock, as ISO with its offset. */
export function localIso(date, time) {
  const zoneName = new Intl.DateTimeFormat('en-US', { timeZone: zoneOf(community.value), timeZoneName: 'longOffset' })
    .formatToParts(new Date(`${date}T${time}Z`)).find((p) => p.type === 'timeZoneName').value // "GMT+08:00"
  return `${date}T${time}${zoneName === 'GMT' ? '+00:00' : zoneName.slice(3)}`
}

/** "YYYY-MM-DD" `days` after the given one. */
export function addDays(day, days) {
  const d = new Date(`${day}T00:00:00Z`)
  d.setUTCDate(d.getUTCDate() + days)
  return d.toISOString().slice(0, 10)
}
