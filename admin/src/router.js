import { createRouter, createWebHistory } from 'vue-router'
import { screens } from './screens'
import { can, session } from './session'

export function allowed(screen) {
  return screen.permissions.length === 0 || screen.permissions.some(can)
}

export const router = createRouter({
  history: createWebHistory('/admin/'),
  routes: [
    { path: '/', redirect: '/today' },
    { path: '/signin', name: 'signin', component: () => import('./views/SignIn.vue'), meta: { public: true } },
    ...screens.map((s) => ({ path: s.path, name: s.name, component: s.component, meta: { screen: s } })),
    { path: '/:rest(.*)*', redirect: '/today' },
  ],
})

router.beforeEach((to) => {
  if (!session.me) return to.meta.public ? true : { name: 'signin', query: { next: to.fullPath } }
  if (to.meta.public) return { name: 'today' }
  const screen = to.meta.screen
  if (screen && !allowed(screen)) return to.name === 'more' ? true : { name: 'more' }
  return true
})
