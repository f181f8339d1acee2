// A settings part's load and save: the last failure in the page's words, the fields the
// server refused, and the word said once a save went through.
import { ref } from 'vue'
import { t } from '../../i18n'

export function useSaving() {
  const problem = ref('')
  const said = ref('')
  const errors = ref({})

  /** Run `step` (a call to the server); on success say `saved` (a words key), if given. */
  async function attempt(step, saved) {
    problem.value = ''
    said.value = ''
    errors.value = {}
    try {
      await step()
      if (saved) said.value = t(saved)
    } catch (error) {
      problem.value = error.words
      errors.value = error.fields ?? {}
    }
  }
  return { problem, said, errors, attempt }
}
