import { createApp } from 'vue'
import 'vant/es/toast/style'
import 'vant/es/dialog/style'
import './style.css'
import App from './App.vue'
import { router } from './router'
import { start } from './session'

start().finally(() => createApp(App).use(router).mount('#app'))
