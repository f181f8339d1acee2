// What a printed tag's QR code carries: `<prefix>:<code>` (models/check_ins.tag_payload),
// the prefix saying what the tag is on, so a screen knows its own tags from any other code.
export const CHECKPOINT_TAG = 'XQCP' // models/patrols.TAG_PREFIX
export const EQUIPMENT_TAG = 'XQEQ' // models/equipment.TAG_PREFIX

/** The code a scanned text carries under `prefix`, or null. */
export function tagCode(prefix, text) {
  const match = new RegExp(`^${prefix}:([A-Za-z0-9-]{1,16})$`).exec(text.trim())
  return match ? match[1] : null
}

/** This phone's id, sent with every check-in at a tag (patrol or inspection; the proof
 * records it, models/check_ins.proof): made once and kept, so one phone is one device. */
export function deviceId() {
  // The key predates equipment inspections; kept so phones already in use keep their id.
  let id = localStorage.getItem('xiaoqu.patrol-device')
  if (!id) {
    id = `phone-${crypto.randomUUID()}`
    localStorage.setItem('xiaoqu.patrol-device', id)
  }
  return id
}
