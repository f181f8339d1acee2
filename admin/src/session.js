// Who is signed in, their communities and what the server lets them do in each.
// The permissions come from GET /api/me (decided in models/access.py); the page only
// asks `can(...)` and never decides by role itself.
import { computed, reactive } from 'vue'
import { api, onSignedOut, resume, signIn, signOut } from './api'

export const session = reactive({ me: null, communityId: null, ready: false })

export const community = computed(
  () => session.me?.communities.find((c) => c.id === session.communityId) ?? null)

/** Whether the server would let the caller do `permission` in the current community. */
export function can(permission) {
  return community.value?.permissions.includes(permission) ?? false
}

async function loadMe() {
  session.me = await api('GET', '/api/me')
  const ids = session.me.communities.map((c) => c.id)
  const remembered = localStorage.getItem('xiaoqu.community')
  session.communityId = ids.includes(remembered) ? remembered : ids[0] ?? null
}

export function switchCommunity(id) {
  session.communityId = id
  localStorage.setItem('xiaoqu.community', id)
}

/** Page load: a reload resumes the session from the refresh cookie. */
export async function start() {
  try {
    if (await resume()) await loadMe()
  } finally {
    session.ready = true
  }
}

export async function login(username, password) {
  await signIn(username, password)
  await loadMe()
}

export async function logout() {
  await signOut()
}

onSignedOut(() => {
  session.me = null
  session.communityId = null
})
