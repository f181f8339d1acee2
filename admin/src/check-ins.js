// A check-in at a tag (patrol or inspection), the front end's side of the one proof rule
// (models/check_ins.py): what a printed tag's QR code carries — `<prefix>:<code>`
// (models/check_ins.tag_payload), the prefix saying what the tag is on, so a screen knows its
// own tags from any other code —, this phone's id and, when the phone gives it, its location;
// the checklist's answers, ok or problem (models/check_ins.ANSWERS).
import { t, words } from './i18n'

words('checkin', { ok: ['正常', 'OK'], problem: ['有问题', 'Problem'] })

export const CHECKPOINT_TAG = 'XQCP' // models/patrols.TAG_PREFIX
export const EQUIPMENT_TAG = 'XQEQ' // models/equipment.TAG_PREFIX

/** The code a scanned text carries under `prefix`, or null. */
export function tagCode(prefix, text) {
  const match = new RegExp(`^${prefix}:([A-Za-z0-9-]{1,16})$`).exec(text.trim())
  return match ? match[1] : null
}

/** This phone's id, sent with every check-in: made once and kept, so one phone is one device. */
export function deviceId() {
  // The key predates equipment inspections; kept so phones already in use keep their id.
  let id = localStorage.getItem('xiaoqu.patrol-device')
  if (!id) {
    id = `phone-${crypto.randomUUID()}`
    localStorage.setItem('xiaoqu.patrol-device', id)
  }
  return id
}

const LOCATION_MS = 5000 // how long to wait for the phone's position before sending without

/** The phone's position for a check-in, or null when it gives none. */
export function checkInLocation() {
  if (!navigator.geolocation) return Promise.resolve(null)
  return new Promise((resolve) => navigator.geolocation.getCurrentPosition(
    (p) => resolve({ latitude: p.coords.latitude, longitude: p.coords.longitude, accuracy_m: p.coords.accuracy }),
    () => resolve(null), { enableHighAccuracy: true, timeout: LOCATION_MS, maximumAge: 30000 }))
}

/** The words of a checklist answer or a check-in's result: 'ok' or 'problem'. */
export const answerWord = (answer) => t(`checkin.${answer}`)

/** The answers a check-in starts from: every item ok. */
export const allOk = (items) => Object.fromEntries(items.map((item) => [item, 'ok']))

/** The items a check-in's answers found a problem with. */
export const failedItems = (answers) => Object.keys(answers).filter((item) => answers[item] === 'problem')
