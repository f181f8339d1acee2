// Every screen of the admin view, in one list: its path, whether it sits in the bottom tab
// bar (`tab`) or the More menu (`menu`) or neither (`title`), and the permissions (any one
// of them) the server must grant for it to be shown.
// To add a screen: write views/Name.vue, add one entry here (see docs/admin.md).
export const screens = [
  { path: '/today', name: 'today', tab: 'tab.today', icon: 'todo-list-o',
    permissions: ['tickets.read'], component: () => import('./views/Today.vue') },
  { path: '/tickets', name: 'tickets', tab: 'tab.tickets', icon: 'orders-o',
    permissions: ['tickets.read'], component: () => import('./views/Tickets.vue') },
  { path: '/tickets/:id', name: 'ticket', title: 'tab.tickets', permissions: ['tickets.read'],
    component: () => import('./views/TicketDetail.vue') },
  { path: '/gates', name: 'gates', tab: 'tab.gates', icon: 'shield-o',
    permissions: ['gates.read'], component: () => import('./views/Gates.vue') },
  { path: '/people', name: 'people', tab: 'tab.people', icon: 'friends-o',
    permissions: ['bindings.read', 'residents.read', 'passes.read', 'passes.walkin'],
    component: () => import('./views/People.vue') },
  { path: '/more', name: 'more', tab: 'tab.more', icon: 'apps-o', permissions: [],
    component: () => import('./views/More.vue') },
  { path: '/access-log', name: 'access-log', menu: 'more.access_log', icon: 'records-o',
    permissions: ['access_log.read'], component: () => import('./views/AccessLog.vue') },
  { path: '/kpi', name: 'kpi', menu: 'more.kpi', icon: 'chart-trending-o',
    permissions: ['kpi.read'], component: () => import('./views/Kpi.vue') },
  { path: '/notices', name: 'notices', menu: 'more.notices', icon: 'volume-o',
    permissions: ['notices.read'], component: () => import('./views/Notices.vue') },
  { path: '/notices/:id', name: 'notice', title: 'more.notices', permissions: ['notices.read'],
    component: () => import('./views/NoticeDetail.vue') },
  { path: '/surveys', name: 'surveys', menu: 'more.surveys', icon: 'description-o',
    permissions: ['surveys.write'], component: () => import('./views/Surveys.vue') },
  { path: '/surveys/:id', name: 'survey', title: 'more.surveys', permissions: ['surveys.write'],
    component: () => import('./views/SurveyDetail.vue') },
  { path: '/settings', name: 'settings', menu: 'more.settings', icon: 'setting-o',
    permissions: ['sla.write', 'staff.write', 'gates.write'],
    component: () => import('./views/Settings.vue') },
]
