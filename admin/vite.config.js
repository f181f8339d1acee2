// Builds the staff admin view into dist/, served by handlers/admin.py under /admin/.
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'
import Components from 'unplugin-vue-components/vite'
import { VantResolver } from '@vant/auto-import-resolver'

// Vant's icon font lists a CDN copy after its inline one; nothing may come from a CDN.
const noCdnFonts = {
  name: 'xiaoqu-no-cdn-fonts',
  transform(code, id) {
    if (id.includes('vant') && id.includes('.css')) {
      return code.replace(/,\s*url\(["']?\/\/at\.alicdn\.com[^)]*\)\s*format\(["']woff["']\)/g, '')
    }
  },
}

export default defineConfig({
  base: '/admin/',
  // Vant components and their styles are imported on demand, where a template uses them.
  plugins: [vue(), Components({ resolvers: [VantResolver()], dts: false }), noCdnFonts],
  build: { outDir: 'dist', assetsDir: 'assets', emptyOutDir: true },
})
