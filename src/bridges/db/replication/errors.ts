// The catch-up step's errors live with every other code in src/errors; re-exported here for the probes.
export { ProbeUnreachableError, ReplicationTimeoutError } from '../../../errors/index.js'
