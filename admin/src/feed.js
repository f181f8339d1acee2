// The community's live feed (handlers/feed.py) shared by every screen: one socket per tab,
// resumed from the last event id after any drop so no event is lost.
import { onUnmounted, reactive } from 'vue'
import { currentAccessToken, renew } from './api'

const BACKOFF_MS = [250, 500, 1000, 2000, 4000]
const TOKEN_EXPIRED = 4401
const FINAL = new Set([4000, 4403, 4404]) // replaced, forbidden, no such community

/** `down` is true while the socket is lost and not yet resumed (the page shows a banner). */
export const feedState = reactive({ down: false, lastId: null, communityId: null })

const listeners = new Set()
// Each tab is its own feed device, so a second tab does not replace the first one's socket
// (check-ins name the phone instead: check-ins.js deviceId).
const device = sessionStorage.getItem('xiaoqu.device') ||
  `admin-${Math.random().toString(36).slice(2, 10)}`
sessionStorage.setItem('xiaoqu.device', device)

let socket = null
let attempt = 0
let retryTimer = null

/** Call `listener(event)` for each live event; returns the function that stops it. */
export function onFeed(listener) {
  listeners.add(listener)
  return () => listeners.delete(listener)
}

export function connectFeed(communityId) {
  if (feedState.communityId !== communityId) feedState.lastId = null
  feedState.communityId = communityId
  disconnectFeed()
  open()
}

export function disconnectFeed() {
  clearTimeout(retryTimer)
  if (socket) {
    socket.onclose = null
    socket.close()
    socket = null
  }
}

async function open() {
  const communityId = feedState.communityId
  try {
    if (!currentAccessToken()) await renew()
  } catch {
    return retry()
  }
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws'
  const ws = new WebSocket(`${scheme}://${location.host}/api/communities/${communityId}/feed`)
  socket = ws
  // The token goes in the first message, not the URL, so no access log ever holds it.
  ws.onopen = () => ws.send(JSON.stringify(
    { token: currentAccessToken(), device, ...(feedState.lastId ? { last_id: feedState.lastId } : {}) }))
  ws.onmessage = (message) => {
    const event = JSON.parse(message.data)
    if (event.type === 'feed.ready') {
      attempt = 0
      feedState.down = false
      if (event.last_id) feedState.lastId = event.last_id
    } else if (event.id) {
      feedState.lastId = event.id
    }
    for (const listener of listeners) listener(event)
  }
  ws.onclose = async (closed) => {
    if (socket !== ws) return
    socket = null
    if (FINAL.has(closed.code)) return
    if (closed.code === TOKEN_EXPIRED) {
      try {
        await renew()
        return open()
      } catch { /* fall through to a retry */ }
    }
    feedState.down = true
    retry()
  }
}

function retry() {
  feedState.down = true
  retryTimer = setTimeout(open, BACKOFF_MS[Math.min(attempt++, BACKOFF_MS.length - 1)])
}

/** In a component: call `listener(event)` for live events until it unmounts. */
export function useFeed(listener) {
  const stop = onFeed(listener)
  onUnmounted(stop)
}
