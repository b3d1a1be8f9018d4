import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import {
  compileTransform,
  decimalMod,
  decimalValue,
  fnv1a32,
  formatRange,
  HASH_SPACE,
  isNumericId,
  MAX_KEY,
  maxKeyOf,
  parseRange,
} from '../../src/rules/index.js'
import { bigMod, referenceFnv1a32 } from '../helpers/rules.js'

const NOT_NUMERIC = [
  '12.5',
  '0x10',
  '1e3',
  ' 42',
  '42 ',
  '',
  '-',
  '+',
  '--5',
  '+-5',
  '-+5',
  '٤٢', // Arabic-Indic digits
  '４２', // fullwidth digits
  '4 2',
  '42\n',
  '1_000',
  'abc',
  'Infinity',
  'NaN',
]

const signedDecimal = fc
  .tuple(fc.constantFrom('', '+', '-'), fc.stringMatching(/^[0-9]{1,60}$/))
  .map(([sign, digits]) => sign + digits)

describe('decimalMod', () => {
  it('equals the BigInt floor modulus for any decimal string of 1..60 digits and any divisor 1..10^14', () => {
    fc.assert(
      fc.property(signedDecimal, fc.integer({ min: 1, max: 1e14 }), (id, m) => {
        assert.equal(decimalMod(id, m), bigMod(id, m))
      }),
      { numRuns: 1000 },
    )
  })

  it('equals the BigInt floor modulus for small divisors too (digits carry through every reduction)', () => {
    fc.assert(
      fc.property(signedDecimal, fc.integer({ min: 1, max: 10_000 }), (id, m) => {
        assert.equal(decimalMod(id, m), bigMod(id, m))
      }),
      { numRuns: 500 },
    )
  })

  it('stays exact when the running value passes 2^53 before it is first reduced', () => {
    // The prefix 900719925474099 is the largest value that is NOT reduced; times 10 plus a digit >= 2
    // passes 2^53 - 1 and must not be rounded.
    const cases: Array<[string, number]> = []
    for (let d = 0; d <= 9; d++) {
      for (const m of [10, 7, 10_000, 1e14 - 1, 1e14]) {
        cases.push([`900719925474099${d}`, m])
        cases.push([`-900719925474099${d}`, m])
        cases.push([`900719925474099${d}123456789`, m])
      }
    }
    // Also reached after a reduction: 90071992547409 < 10^14, then the digit 9 makes 900719925474099.
    cases.push(['1' + '0'.repeat(14) + '900719925474099' + '3', 1e14])
    const wrong = cases.filter(([id, m]) => decimalMod(id, m) !== bigMod(id, m))
    assert.deepEqual(
      wrong.map(([id, m]) => `${id} mod ${m} = ${decimalMod(id, m)}, expected ${bigMod(id, m)}`),
      [],
    )
  })

  it('reads leading zeros and a plus sign as the same number', () => {
    assert.equal(decimalMod('007', 10000), 7)
    assert.equal(decimalMod('+7', 10000), 7)
    assert.equal(decimalMod('+0007', 10000), 7)
    assert.equal(decimalMod('00000000000000000000000000000012345', 10000), 2345)
  })

  it('takes the floor modulus of a negative id', () => {
    assert.equal(decimalMod('-5', 10000), 9995)
    assert.equal(decimalMod('-1', 10000), 9999)
    assert.equal(decimalMod('-10001', 10000), 9999)
    assert.ok(Object.is(decimalMod('-10000', 10000), 0), '-10000 mod 10000 is +0')
    assert.ok(Object.is(decimalMod('-0', 10000), 0), '-0 mod 10000 is +0')
  })

  it('is exact on ids far beyond 2^53', () => {
    const id = '123456789012345678901234567890123456789'
    assert.equal(decimalMod(id, 10000), 6789)
    assert.equal(decimalMod(id, 1e14), bigMod(id, 1e14))
    assert.equal(decimalMod('18446744073709551617', 10000), 1617)
  })

  it('returns NaN for anything outside the number grammar', () => {
    for (const id of NOT_NUMERIC) {
      assert.ok(Number.isNaN(decimalMod(id, 10000)), `decimalMod(${JSON.stringify(id)}) must be NaN`)
      assert.ok(Number.isNaN(decimalValue(id)), `decimalValue(${JSON.stringify(id)}) must be NaN`)
      assert.equal(isNumericId(id), false, `isNumericId(${JSON.stringify(id)})`)
    }
  })

  it('accepts exactly the strings matching /^[+-]?[0-9]+$/', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ maxLength: 8 }), fc.stringMatching(/^[+\- 0-9.e]{0,8}$/), signedDecimal),
        (id) => {
          const grammar = /^[+-]?[0-9]+$/.test(id)
          assert.equal(isNumericId(id), grammar)
          assert.equal(Number.isNaN(decimalMod(id, 97)), !grammar)
        },
      ),
      { numRuns: 500 },
    )
  })
})

describe('decimalValue', () => {
  it('is exact up to 2^53 - 1 and Infinity beyond', () => {
    assert.equal(decimalValue('9007199254740991'), 9007199254740991)
    assert.equal(decimalValue('+9007199254740991'), 9007199254740991)
    assert.equal(decimalValue('-9007199254740991'), -9007199254740991)
    assert.equal(decimalValue('9007199254740992'), Number.POSITIVE_INFINITY)
    assert.equal(decimalValue('9007199254740993'), Number.POSITIVE_INFINITY)
    assert.equal(decimalValue('-9007199254740992'), Number.NEGATIVE_INFINITY)
    assert.equal(decimalValue('12345678901234567890'), Number.POSITIVE_INFINITY)
    assert.equal(decimalValue('0009007199254740991'), 9007199254740991)
  })

  it('reads -0 as key +0, like decimalMod does', () => {
    assert.ok(Object.is(decimalMod('-0', 10), 0))
    assert.ok(Object.is(decimalValue('-0'), 0), 'decimalValue("-0") must be +0, not -0')
    assert.ok(Object.is(decimalValue('-000'), 0), 'decimalValue("-000") must be +0, not -0')
  })

  it('still rejects a long id whose tail is not digits', () => {
    assert.ok(Number.isNaN(decimalValue('123456789012345678901234567890x')))
    assert.ok(Number.isNaN(decimalValue('12345678901234567890.5')))
  })

  it('agrees with BigInt on random ids of 1..20 digits', () => {
    fc.assert(
      fc.property(
        fc.tuple(fc.constantFrom('', '+', '-'), fc.stringMatching(/^[0-9]{1,20}$/)),
        ([sign, digits]) => {
          const big = BigInt(sign + digits)
          const abs = big < 0n ? -big : big
          const expected =
            abs > BigInt(Number.MAX_SAFE_INTEGER)
              ? sign === '-'
                ? Number.NEGATIVE_INFINITY
                : Number.POSITIVE_INFINITY
              : Number(big)
          // === here: the sign of zero is checked on its own below
          assert.ok(decimalValue(sign + digits) === expected, `${sign}${digits}`)
        },
      ),
      { numRuns: 500 },
    )
  })
})

describe('fnv1a32', () => {
  it('matches the published FNV-1a 32-bit vectors', () => {
    assert.equal(fnv1a32(''), 0x811c9dc5)
    assert.equal(fnv1a32('a'), 0xe40c292c)
    assert.equal(fnv1a32('foobar'), 0xbf9cf968)
  })

  it('hashes the UTF-8 bytes TextEncoder produces, for any string including astral characters', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (s) => {
        assert.equal(fnv1a32(s), referenceFnv1a32(s))
      }),
      { numRuns: 500 },
    )
  })

  it('hashes lone surrogates as U+FFFD, exactly like TextEncoder', () => {
    const codeUnit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c))
    const surrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c))
    fc.assert(
      fc.property(
        fc.string({ unit: fc.oneof(codeUnit, surrogate, fc.constant('a')), maxLength: 30 }),
        (s) => {
          assert.equal(fnv1a32(s), referenceFnv1a32(s))
        },
      ),
      { numRuns: 500 },
    )
    for (const s of [
      '\ud800',
      '\udc00',
      'a\ud83d',
      '\ud83da',
      '\ude00\ud83d',
      '\ud83d\ude00',
      'x\udfff\ud800y',
    ]) {
      assert.equal(fnv1a32(s), referenceFnv1a32(s), JSON.stringify(s))
    }
    assert.equal(fnv1a32('\ud800'), fnv1a32('\ufffd'))
  })

  it('returns an unsigned 32-bit integer', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        const h = fnv1a32(s)
        assert.ok(Number.isInteger(h) && h >= 0 && h < HASH_SPACE)
      }),
      { numRuns: 200 },
    )
  })
})

describe('parseRange', () => {
  it('parses inclusive lo~hi ranges, including single keys and the largest key', () => {
    assert.deepEqual(parseRange('2000~2999'), { lo: 2000, hi: 2999 })
    assert.deepEqual(parseRange('5~5'), { lo: 5, hi: 5 })
    assert.deepEqual(parseRange('0~9007199254740991'), { lo: 0, hi: MAX_KEY })
    assert.deepEqual(parseRange('007~010'), { lo: 7, hi: 10 })
  })

  it('explains every malformed range in a sentence', () => {
    assert.equal(parseRange('3000~2000'), '3000~2000 has lo greater than hi')
    assert.equal(parseRange(' 1~2'), '" 1~2" has spaces; write it as lo~hi, e.g. 2000~2999')
    assert.equal(parseRange('1 ~ 2'), '"1 ~ 2" has spaces; write it as lo~hi, e.g. 2000~2999')
    assert.equal(parseRange('-1~5'), '"-1~5" has a negative bound; keys are never negative')
    assert.equal(parseRange('1~-5'), '"1~-5" has a negative bound; keys are never negative')
    assert.equal(
      parseRange('1~12345678901234567'),
      `"1~12345678901234567" has a bound larger than ${MAX_KEY}`,
    )
    assert.equal(parseRange('1~9007199254740992'), `1~9007199254740992 has a bound larger than ${MAX_KEY}`)
    for (const bad of ['abc', '1~2~3', '', '1-2', '1~', '~2', '1.5~2', '0x1~2']) {
      assert.equal(
        parseRange(bad),
        `${JSON.stringify(bad)} is not a range; write it as lo~hi with whole numbers, e.g. 2000~2999`,
      )
    }
  })

  it('formats back what it parses', () => {
    fc.assert(
      fc.property(fc.nat({ max: MAX_KEY }), fc.nat({ max: MAX_KEY }), (a, b) => {
        const r = { lo: Math.min(a, b), hi: Math.max(a, b) }
        assert.deepEqual(parseRange(formatRange(r)), r)
      }),
      { numRuns: 200 },
    )
  })
})

describe('maxKeyOf and compileTransform', () => {
  it('gives the key space of each transform chain', () => {
    assert.equal(maxKeyOf([]), MAX_KEY)
    assert.equal(maxKeyOf([{ type: 'identity' }]), MAX_KEY)
    assert.equal(maxKeyOf([{ type: 'mod', divisor: 10000 }]), 9999)
    assert.equal(maxKeyOf([{ type: 'hash' }]), HASH_SPACE - 1)
    assert.equal(maxKeyOf([{ type: 'hash' }, { type: 'mod', divisor: 1000 }]), 999)
    assert.equal(
      maxKeyOf([
        { type: 'mod', divisor: 100 },
        { type: 'mod', divisor: 7 },
      ]),
      6,
    )
    assert.equal(
      maxKeyOf([
        { type: 'mod', divisor: 7 },
        { type: 'mod', divisor: 100 },
      ]),
      6,
    )
  })

  it('compiles identity, mod chains and hash chains to the documented keys', () => {
    const identity = compileTransform([])
    assert.equal(identity('42'), 42)
    assert.equal(compileTransform([{ type: 'identity' }])('+0042'), 42)
    assert.ok(Number.isNaN(identity('alice')))
    const mods = compileTransform([
      { type: 'mod', divisor: 100 },
      { type: 'mod', divisor: 7 },
    ])
    assert.equal(mods('12345'), (12345 % 100) % 7)
    assert.equal(mods('-1'), 99 % 7)
    assert.ok(Number.isNaN(mods('x')))
    const hash = compileTransform([{ type: 'hash' }])
    assert.equal(hash('alice@example.com'), fnv1a32('alice@example.com'))
    assert.equal(hash('12345'), fnv1a32('12345'), 'hash hashes numeric ids too')
    const hashMod = compileTransform([{ type: 'hash' }, { type: 'mod', divisor: 1000 }])
    assert.equal(hashMod('alice@example.com'), fnv1a32('alice@example.com') % 1000)
    const hashMods = compileTransform([
      { type: 'hash' },
      { type: 'mod', divisor: 1000 },
      { type: 'mod', divisor: 7 },
    ])
    assert.equal(hashMods('bob'), (fnv1a32('bob') % 1000) % 7)
  })
})
