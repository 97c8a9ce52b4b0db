/** Task environments for task authors (a task's sandbox without an agent) and SSH access to sandboxes. */
export { type TaskEnvironmentRecord, TaskEnvironmentRepository, type TaskEnvironmentState } from './repository.js';
export * from './service.js';
export { ensureSshd, installSshKeys, type SshUser, sshHostKeys, sshPublicKeyProblem } from './ssh.js';
