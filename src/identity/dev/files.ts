// Generated key material is written through the one durable-write helper (src/core/files.ts).
export { PUBLIC_MODE, SECRET_MODE, writeFileAtomic as writeFileDurable } from '../../core/files.js';
