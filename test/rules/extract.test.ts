import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { compileExtractor, cookieValue, header, queryParam } from '../../src/rules/index.js'

describe('queryParam', () => {
  it('returns the first occurrence of the parameter', () => {
    assert.equal(queryParam('/o?r_id=1&r_id=2', 'r_id'), '1')
    assert.equal(queryParam('/o?a=1&r_id=2&b=3', 'r_id'), '2')
    assert.equal(queryParam('/o?a=1&b=3', 'r_id'), undefined)
    assert.equal(queryParam('/o', 'r_id'), undefined)
  })

  it('does not match a parameter whose name merely ends or starts with the name', () => {
    assert.equal(queryParam('/o?xr_id=1&r_idx=2&r_id=3', 'r_id'), '3')
    assert.equal(queryParam('/o?xr_id=1', 'r_id'), undefined)
  })

  it('decodes + and percent escapes', () => {
    assert.equal(queryParam('/o?r_id=a+b', 'r_id'), 'a b')
    assert.equal(queryParam('/o?r_id=alice%40example.com', 'r_id'), 'alice@example.com')
    assert.equal(queryParam('/o?r_id=%E7%A7%9F%E6%88%B7', 'r_id'), '租户')
    assert.equal(queryParam('/o?r_id=%2B7', 'r_id'), '+7')
    assert.equal(queryParam('/o?r_id=a%26b&x=1', 'r_id'), 'a&b')
  })

  it('leaves a value with a malformed escape raw', () => {
    assert.equal(queryParam('/o?r_id=100%', 'r_id'), '100%')
    assert.equal(queryParam('/o?r_id=%zz+1', 'r_id'), '%zz+1')
    assert.equal(queryParam('/o?r_id=%E7%A7', 'r_id'), '%E7%A7')
  })

  it('ignores the fragment', () => {
    assert.equal(queryParam('/o?a=1#r_id=5', 'r_id'), undefined)
    assert.equal(queryParam('/o?r_id=5#frag', 'r_id'), '5')
    assert.equal(queryParam('/o?r_id=5#&r_id=6', 'r_id'), '5')
    assert.equal(queryParam('/o?#r_id=5', 'r_id'), undefined)
  })

  it('does not read a query string inside the fragment', () => {
    assert.equal(queryParam('/o#section?r_id=5', 'r_id'), undefined)
    assert.equal(queryParam('https://shop.example/o#/cart?r_id=5', 'r_id'), undefined)
  })

  it('returns undefined for a parameter with no value or an empty value', () => {
    assert.equal(queryParam('/o?r_id', 'r_id'), undefined)
    assert.equal(queryParam('/o?r_id&x=1', 'r_id'), undefined)
    assert.equal(queryParam('/o?r_id=', 'r_id'), undefined)
    assert.equal(queryParam('/o?r_id=&x=1', 'r_id'), undefined)
  })

  it('keeps everything after the first = in the value', () => {
    assert.equal(queryParam('/o?r_id=a=b', 'r_id'), 'a=b')
  })

  it('matches a percent-encoded parameter name', () => {
    assert.equal(queryParam('/o?r%5Fid=42', 'r_id'), '42')
    assert.equal(queryParam('/o?%72_id=42', 'r_id'), '42')
    assert.equal(queryParam('/o?r%20id=42', 'r id'), '42')
  })

  it('matches a parameter name written with + for a space', () => {
    assert.equal(queryParam('/o?r+id=42', 'r id'), '42')
  })

  it('reads absolute URLs', () => {
    assert.equal(queryParam('https://shop.example:8443/orders/1?r_id=2500&x=y', 'r_id'), '2500')
    assert.equal(queryParam('http://user:pw@h/p?r_id=7#top', 'r_id'), '7')
  })
})

describe('header', () => {
  it('reads a node:http header record with lower-case names', () => {
    assert.equal(header({ 'x-r-id': '42' }, 'x-r-id'), '42')
    assert.equal(header({ 'x-r-id': '42' }, 'x-other'), undefined)
    assert.equal(header({ 'x-r-id': '' }, 'x-r-id'), undefined)
    assert.equal(header(undefined, 'x-r-id'), undefined)
    assert.equal(header({ r_id: '5' }, 'r_id'), '5', 'names with _ work (AppActive B19)')
  })

  it('takes the first value of a repeated header', () => {
    assert.equal(header({ 'x-r-id': ['1', '2'] }, 'x-r-id'), '1')
    assert.equal(header({ 'x-r-id': [] }, 'x-r-id'), undefined)
    assert.equal(header({ 'x-r-id': [''] }, 'x-r-id'), undefined)
  })

  it('reads a fetch Headers object, case-insensitively', () => {
    const h = new Headers({ 'X-R-Id': '42' })
    assert.equal(header(h, 'x-r-id'), '42')
    assert.equal(header(new Headers(), 'x-r-id'), undefined)
    assert.equal(header(new Headers({ 'x-r-id': '' }), 'x-r-id'), undefined)
  })
})

describe('cookieValue', () => {
  it('matches cookie names exactly: xr-id never matches r-id (AppActive B3)', () => {
    assert.equal(cookieValue('xr-id=100; r-id=5000', 'r-id'), '5000')
    assert.equal(cookieValue('xr-id=100', 'r-id'), undefined)
    assert.equal(cookieValue('r-idx=100; r-id=7', 'r-id'), '7')
  })

  it('matches names case-sensitively', () => {
    assert.equal(cookieValue('R-ID=1; r-id=2', 'r-id'), '2')
    assert.equal(cookieValue('R-ID=1', 'r-id'), undefined)
  })

  it('unquotes a double-quoted value and keeps it otherwise opaque', () => {
    assert.equal(cookieValue('r-id="5000"', 'r-id'), '5000')
    assert.equal(cookieValue('r-id=%35', 'r-id'), '%35', 'cookie values are not percent-decoded')
    assert.equal(cookieValue('r-id="', 'r-id'), '"')
    assert.equal(cookieValue('r-id=""', 'r-id'), undefined)
  })

  it('ignores spaces and tabs around pairs, names and values', () => {
    assert.equal(cookieValue('  a=1 ;\t r-id = 42  ; b=2', 'r-id'), '42')
    assert.equal(cookieValue('a=1;r-id=42', 'r-id'), '42')
  })

  it('skips pairs without =', () => {
    assert.equal(cookieValue('r-id; a=1; r-id=9', 'r-id'), '9')
    assert.equal(cookieValue('flag;r-id=9', 'r-id'), '9')
    assert.equal(cookieValue(';;r-id=9;', 'r-id'), '9')
  })

  it('keeps = inside the value', () => {
    assert.equal(cookieValue('r-id=a=b', 'r-id'), 'a=b')
  })

  it('treats an empty value as absent, first match wins', () => {
    assert.equal(cookieValue('r-id=; a=1', 'r-id'), undefined)
    assert.equal(cookieValue('r-id=1; r-id=2', 'r-id'), '1')
    assert.equal(cookieValue('', 'r-id'), undefined)
  })
})

describe('compileExtractor', () => {
  const extract = compileExtractor([
    { from: 'query', name: 'r_id' },
    { from: 'header', name: 'X-R-Id' },
    { from: 'cookie', name: 'r-id' },
  ])

  it('tries query, then header, then cookie, in the listed order', () => {
    const all = { url: '/o?r_id=1', headers: { 'x-r-id': '2', cookie: 'r-id=3' } }
    assert.equal(extract(all), '1')
    assert.equal(extract({ ...all, url: '/o' }), '2')
    assert.equal(extract({ headers: { cookie: 'r-id=3' } }), '3')
    assert.equal(extract({}), undefined)
    const reversed = compileExtractor([
      { from: 'cookie', name: 'r-id' },
      { from: 'query', name: 'r_id' },
    ])
    assert.equal(reversed(all), '3')
  })

  it('falls through an empty value to the next source', () => {
    assert.equal(extract({ url: '/o?r_id=', headers: { 'x-r-id': '2' } }), '2')
    assert.equal(extract({ url: '/o?r_id', headers: { 'x-r-id': '', cookie: 'r-id=3' } }), '3')
    assert.equal(extract({ url: '/o?r_id=', headers: { 'x-r-id': '', cookie: 'r-id=' } }), undefined)
  })

  it('matches the header name case-insensitively and reads fetch Headers', () => {
    const headers = new Headers({ 'x-r-id': '2', cookie: 'xr-id=9; r-id=3' })
    assert.equal(extract({ url: 'https://h/o', headers }), '2')
    headers.delete('x-r-id')
    assert.equal(extract({ url: 'https://h/o', headers }), '3')
  })

  it('works with a single source too', () => {
    const only = compileExtractor([{ from: 'cookie', name: 'r-id' }])
    assert.equal(only({ headers: { cookie: 'r-id=5' } }), '5')
    assert.equal(only({ headers: { cookie: 'r-id=' } }), undefined)
    assert.equal(only({}), undefined)
    const q = compileExtractor([{ from: 'query', name: 'r_id' }])
    assert.equal(q({ url: '/o?r_id=%2D5' }), '-5')
    assert.equal(q({}), undefined)
  })
})
