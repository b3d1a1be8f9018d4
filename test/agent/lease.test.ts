import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { Lease } from '../../src/agent/index.js'

/** A clock the test moves by hand. */
function fakeClock(start = 0) {
  let t = start
  return {
    clock: { now: () => t },
    set: (ms: number) => {
      t = ms
    },
  }
}

describe('Lease', () => {
  test('off until enabled: writes allowed, no limit', () => {
    const { clock } = fakeClock()
    const lease = new Lease(clock)
    assert.equal(lease.enabled, false)
    assert.equal(lease.state(), 'off')
    assert.equal(lease.allowsWrites(), true)
    assert.equal(lease.remainingMs(), Number.POSITIVE_INFINITY)
    // Renewing a disabled lease changes nothing visible.
    lease.renew(0, 100, 1, 1)
    assert.equal(lease.state(), 'off')
    assert.equal(lease.allowsWrites(), true)
  })

  test('enabled: pending (writes refused) until the first grant', () => {
    const { clock } = fakeClock()
    const lease = new Lease(clock)
    lease.enable()
    assert.equal(lease.enabled, true)
    assert.equal(lease.state(), 'pending')
    assert.equal(lease.allowsWrites(), false)
    assert.equal(lease.remainingMs(), 0)
  })

  test('pending -> valid -> expired as the clock passes the lease end', () => {
    const { clock, set } = fakeClock()
    const lease = new Lease(clock)
    lease.enable()
    lease.renew(0, 100, 0, 0)
    assert.equal(lease.state(), 'valid')
    assert.equal(lease.allowsWrites(), true)
    assert.equal(lease.remainingMs(), 100)
    set(99)
    assert.equal(lease.state(), 'valid')
    assert.equal(lease.remainingMs(), 1)
    set(100) // the end is exclusive
    assert.equal(lease.state(), 'expired')
    assert.equal(lease.allowsWrites(), false)
    assert.equal(lease.remainingMs(), 0)
    set(1000)
    assert.equal(lease.remainingMs(), 0)
  })

  test('the lease is measured from the send time, not the receive time', () => {
    const { clock, set } = fakeClock()
    const lease = new Lease(clock)
    lease.enable()
    set(60) // the heartbeat sent at t=0 comes back at t=60
    lease.renew(0, 100, 0, 0)
    assert.equal(lease.remainingMs(), 40)
    set(99)
    assert.equal(lease.state(), 'valid')
    set(100) // not 160
    assert.equal(lease.state(), 'expired')
  })

  test('a heartbeat that comes back after its lease already ended grants nothing usable', () => {
    const { clock, set } = fakeClock()
    const lease = new Lease(clock)
    lease.enable()
    set(150)
    lease.renew(0, 100, 0, 0)
    assert.equal(lease.allowsWrites(), false)
    assert.equal(lease.remainingMs(), 0)
  })

  test('a running lease is extended by each successful heartbeat, never shortened', () => {
    const { clock, set } = fakeClock()
    const lease = new Lease(clock)
    lease.enable()
    lease.renew(0, 100, 1, 1)
    set(50)
    lease.renew(50, 100, 1, 1)
    assert.equal(lease.remainingMs(), 100) // until 150
    // A slow, older heartbeat that arrives late cannot pull the end back.
    lease.renew(10, 100, 1, 1)
    assert.equal(lease.remainingMs(), 100)
    set(149)
    assert.equal(lease.state(), 'valid')
    set(150)
    assert.equal(lease.state(), 'expired')
  })

  test('not granted while behind the latest version; granted once in sync', () => {
    const { clock, set } = fakeClock()
    const lease = new Lease(clock)
    lease.enable()
    lease.renew(0, 100, 3, 2)
    assert.equal(lease.state(), 'pending')
    assert.equal(lease.latestVersion, 3)
    lease.renew(0, 100, 3, 3)
    assert.equal(lease.state(), 'valid')
    // Ahead of the server (e.g. from a newer cache) is in sync too.
    set(200)
    lease.renew(200, 100, 3, 4)
    assert.equal(lease.state(), 'valid')
  })

  test('a lapsed lease is not granted again until the agent has the latest version', () => {
    const { clock, set } = fakeClock()
    const lease = new Lease(clock)
    lease.enable()
    lease.renew(0, 100, 1, 1)
    set(100)
    assert.equal(lease.state(), 'expired')
    lease.renew(100, 100, 2, 1)
    assert.equal(lease.state(), 'expired')
    assert.equal(lease.allowsWrites(), false)
    // The server's latest version only moves up: a later answer naming an older one does not help.
    lease.renew(100, 100, 1, 1)
    assert.equal(lease.state(), 'expired')
    assert.equal(lease.latestVersion, 2)
    lease.renew(100, 100, 2, 2)
    assert.equal(lease.state(), 'valid')
    assert.equal(lease.remainingMs(), 100)
  })

  test('a running lease keeps being extended while heartbeats succeed, even when behind', () => {
    // The lapse rule is what protects: a node that heartbeats but has not acked is waited for by the
    // server (it is neither acked nor lapsed), so a cut-over cannot proceed past it.
    const { clock, set } = fakeClock()
    const lease = new Lease(clock)
    lease.enable()
    lease.renew(0, 100, 1, 1)
    set(50)
    lease.renew(50, 100, 2, 1)
    assert.equal(lease.state(), 'valid')
    assert.equal(lease.remainingMs(), 100)
    set(150)
    assert.equal(lease.state(), 'expired')
    lease.renew(150, 100, 2, 1)
    assert.equal(lease.state(), 'expired')
  })
})
