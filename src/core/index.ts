export * from './reasons.js';
export * from './errors.js';
export * from './clock.js';
export * from './command.js';
export * from './log.js';
export * from './pipeline.js';
export * from './yaml.js';
export * from './files.js';
