// The one way the page talks to the server.
//
// Session scheme (docs/admin.md): the refresh token lives in an HttpOnly cookie scoped to
// /api/auth/session, which page scripts never see; the access token lives only in this
// module's memory and is renewed by itself before it expires. Calls that the cookie
// authenticates carry the CSRF token from the readable `xiaoqu_csrf` cookie as a header.
import { reactive } from 'vue'
import { i18n, t, words } from './i18n'

const SESSION = '/api/auth/session'
const RENEW_AT = 0.8 // of the access token's lifetime
const HEALTH_POLL_MS = [500, 1000, 2000, 4000]

/** Whether the server answers; the page shows a banner while it does not. */
export const connection = reactive({ online: true })

let accessToken = null
let renewTimer = null
let renewing = null
const signedOutListeners = new Set()

export class ApiError extends Error {
  constructor(status, error) {
    super(error.message || error.code)
    this.status = status
    this.code = error.code
    this.fields = error.fields || {}
    this.detail = error
  }

  /**
   * Words a guard understands, in the page's language: the server's own (it words every error
   * in the Accept-Language this module sends, models/messages.py), else the page's for what
   * no server said (no connection, a proxy's bare status page).
   */
  get words() {
    if (this.detail.message) return this.detail.message
    const key = `error.${this.code}`
    return t(key) !== key ? t(key) : this.code
  }
}

function csrfToken() {
  return document.cookie.match(/(?:^|;\s*)xiaoqu_csrf=([^;]+)/)?.[1] ?? ''
}

async function send(url, options) {
  let response
  try {
    // The server words its errors in the page's language (codes stay the same).
    const headers = { 'Accept-Language': i18n.lang, ...options.headers }
    response = await fetch(url, { credentials: 'same-origin', ...options, headers })
  } catch {
    markOffline()
    throw new ApiError(0, { code: 'network' })
  }
  connection.online = true
  if (response.status === 204) return null
  const type = response.headers.get('Content-Type') || ''
  const body = type.startsWith('application/json') ? await response.json() : await response.blob()
  if (!response.ok) {
    throw new ApiError(response.status, body?.error || { code: `http_${response.status}` })
  }
  return body
}

function adopt(tokens) {
  accessToken = tokens.access_token
  clearTimeout(renewTimer)
  renewTimer = setTimeout(() => renew().catch(() => {}), tokens.expires_in * 1000 * RENEW_AT)
  return tokens
}

async function sessionCall(path, body) {
  return send(SESSION + path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrfToken() },
    body: JSON.stringify(body || {}),
  })
}

export async function signIn(username, password) {
  return adopt(await sessionCall('', { username, password }))
}

/** New access token from the refresh cookie; tabs take turns so none reuses a spent cookie. */
export function renew() {
  renewing ??= (async () => {
    const exchange = () => sessionCall('/refresh')
    try {
      return adopt(navigator.locks
        ? await navigator.locks.request('xiaoqu-session-refresh', exchange)
        : await exchange())
    } catch (error) {
      if (error.status === 401 || error.status === 403) forget()
      throw error
    } finally {
      renewing = null
    }
  })()
  return renewing
}

/** On page load: resume the session the cookie holds, if any. */
export async function resume() {
  if (!csrfToken()) return false
  try {
    await renew()
    return true
  } catch (error) {
    if (error.status === 0) throw error
    return false
  }
}

export async function signOut() {
  try {
    await sessionCall('/logout')
  } finally {
    forget()
  }
}

function forget() {
  accessToken = null
  clearTimeout(renewTimer)
  for (const listener of signedOutListeners) listener()
}

export function onSignedOut(listener) {
  signedOutListeners.add(listener)
}

export function currentAccessToken() {
  return accessToken
}

/**
 * Call the API: `api('GET', '/api/me')`, `api('POST', url, {json})`, or with `{ body:
 * FormData }` for uploads, or `{ body: file, type }` to send a file raw as `type`.
 * Answers parsed JSON (or a Blob); throws ApiError.
 */
export async function api(method, url, json, { body, type, retried = false } = {}) {
  if (!accessToken) await renew()
  const headers = { Authorization: `Bearer ${accessToken}` }
  if (json !== undefined) headers['Content-Type'] = 'application/json'
  else if (type) headers['Content-Type'] = type
  try {
    return await send(url, { method, headers, body: json !== undefined ? JSON.stringify(json) : body })
  } catch (error) {
    if (error.status === 401 && !retried && ['token_expired', 'token_revoked', 'bad_token'].includes(error.code)) {
      await renew()
      return api(method, url, json, { body, type, retried: true })
    }
    throw error
  }
}

let polling = false
/** Lost the server: poll its health until it answers, then say so. */
export function markOffline() {
  connection.online = false
  if (polling) return
  polling = true
  let attempt = 0
  const poll = async () => {
    try {
      const reply = await fetch('/healthz', { cache: 'no-store' })
      if (reply.ok) {
        connection.online = true
        polling = false
        return
      }
    } catch { /* still down */ }
    setTimeout(poll, HEALTH_POLL_MS[Math.min(attempt++, HEALTH_POLL_MS.length - 1)])
  }
  setTimeout(poll, HEALTH_POLL_MS[0])
}

// Only what no server answer words: the server says its own errors (see ApiError.words).
words('error', {
  network: ['连不上服务器，请检查网络', 'Cannot reach the server; check the network'],
  http_401: ['请先登录', 'Please sign in'], http_403: ['您没有权限做这件事', 'You may not do this'],
  http_404: ['找不到，可能已被删除', 'Not found; it may have been removed'],
  http_409: ['状态已变化，请刷新', 'It changed meanwhile; reload'], http_413: ['文件太大', 'File too large'],
  http_422: ['无法处理这个请求', 'This request cannot be handled'],
  http_429: ['操作太频繁，请稍后再试', 'Too many attempts; wait a little'],
  http_500: ['服务器出错了，请稍后再试', 'Server error; try again later'],
  http_503: ['服务器暂时不可用，请稍后再试', 'The server is busy; try again later'],
})
