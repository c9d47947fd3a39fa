// The lab's front door: bring one up (startup.ts), hold it (handle.ts), take
// it down (teardown.ts). See README.md beside this file for the picture.
export { Lab, oneLine, type LabDescription, type Say, type UpOptions } from './handle.js';
export { labUp } from './startup.js';
export { labDown, removeOrphanLabs } from './teardown.js';
export { listLabs } from './state.js';
export { KUBECTL } from './paths.js';
