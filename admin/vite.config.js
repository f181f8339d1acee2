// Builds the staff admin view into dist/, served by handlers/admin.py under /admin/.
import { copyFileSync, mkdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
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

// Swagger UI for /docs (handlers/health.py serves dist/swagger-ui/ as /docs/static/): the
// files of the swagger-ui-dist package as published, copied rather than bundled.
const SWAGGER_UI_FILES = ['swagger-ui.css', 'swagger-ui-bundle.js']
const swaggerUi = {
  name: 'xiaoqu-swagger-ui',
  closeBundle() {
    const from = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'))
    mkdirSync('dist/swagger-ui', { recursive: true })
    for (const file of SWAGGER_UI_FILES) copyFileSync(join(from, file), join('dist/swagger-ui', file))
  },
}

export default defineConfig({
  base: '/admin/',
  // Vant components and their styles are imported on demand, where a template uses them.
  plugins: [vue(), Components({ resolvers: [VantResolver()], dts: false }), noCdnFonts, swaggerUi],
  build: { outDir: 'dist', assetsDir: 'assets', emptyOutDir: true },
})
