import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { RuleInvalidError, type RuleIssue } from '../../src/errors/index.js'
import { formatOf, MAX_TEXT_BYTES, parseRuleSet, parseText, type TextFormat } from '../../src/rules/index.js'
import { baseline } from '../helpers/rules.js'

const BASELINE_YAML = `# the two-unit baseline
version: 1
units:
  - name: unit
  - name: center
    center: true
idSource:
  - { from: query, name: r_id }
transform:
  - type: mod
    divisor: 10000
mapping:
  - unit: unit
    ranges: ["0~1999"]
  - unit: center
    ranges: ["2000~9999"]
`

/** The issues of the RuleInvalidError that parsing `text` throws. */
function parseIssues(text: string, format: TextFormat, file?: string): readonly RuleIssue[] {
  try {
    parseRuleSet(text, format, file)
  } catch (err) {
    assert.ok(err instanceof RuleInvalidError, `expected RuleInvalidError, got ${String(err)}`)
    return err.issues
  }
  assert.fail('expected parseRuleSet to throw')
}

describe('parseRuleSet: well-formed text', () => {
  it('reads JSON into the same rule set', () => {
    assert.deepEqual(parseRuleSet(JSON.stringify(baseline(), null, 2), 'json'), baseline())
  })

  it('reads YAML into the same rule set', () => {
    assert.deepEqual(parseRuleSet(BASELINE_YAML, 'yaml'), baseline())
    assert.deepEqual(parseRuleSet(BASELINE_YAML), baseline(), 'YAML is the default format')
  })

  it('reads JSON as YAML too (YAML is a superset)', () => {
    assert.deepEqual(parseRuleSet(JSON.stringify(baseline()), 'yaml'), baseline())
  })

  it('reads YAML 1.2: "yes" is a string, not true', () => {
    const issues = parseIssues(BASELINE_YAML.replace('center: true', 'center: yes'), 'yaml')
    assert.deepEqual(issues, [
      { path: 'units[1].center', message: 'expected true or false, got string "yes"' },
    ])
  })

  it('guesses the format from the file name', () => {
    assert.equal(formatOf('rules.json'), 'json')
    assert.equal(formatOf('RULES.JSON'), 'json')
    assert.equal(formatOf('rules.yaml'), 'yaml')
    assert.equal(formatOf('rules.yml'), 'yaml')
    assert.equal(formatOf('rules'), 'yaml')
  })
})

describe('parseRuleSet: malformed text', () => {
  it('gives the line and column of a JSON error V8 locates', () => {
    const issues = parseIssues('{\n  "version": 1,\n}\n', 'json', 'rules.json')
    assert.equal(issues.length, 1)
    const [issue] = issues
    assert.equal(issue!.line, 3)
    assert.equal(issue!.column, 1)
    assert.equal(issue!.file, 'rules.json')
    assert.equal(issue!.path, '')
    assert.equal(issue!.message, 'malformed JSON: Expected double-quoted property name')
  })

  it('gives the line and column of an unterminated JSON string', () => {
    const [issue] = parseIssues('{"version": "x', 'json')
    assert.equal(issue!.line, 1)
    assert.equal(issue!.column, 15)
    assert.match(issue!.message, /^malformed JSON: Unterminated string/)
  })

  it('gives the line and column of an unexpected JSON token (V8 gives no position)', () => {
    // The '}' on line 3 is the 13th character of that line.
    const [issue] = parseIssues('{\n  "version": 1,\n  "units": [}\n', 'json', 'rules.json')
    assert.deepEqual({ line: issue!.line, column: issue!.column }, { line: 3, column: 13 })
    const [other] = parseIssues('[1,]', 'json')
    assert.deepEqual({ line: other!.line, column: other!.column }, { line: 1, column: 4 })
  })

  it('does not copy the file content into a JSON error message', () => {
    const [issue] = parseIssues('{\n  "version": 1,\n  "units": [}\n', 'json')
    assert.equal(issue!.message, "malformed JSON: Unexpected token '}'")
    const [short] = parseIssues('{"a": }', 'json')
    assert.equal(short!.message, "malformed JSON: Unexpected token '}'")
  })

  it('gives the line and column of a YAML syntax error', () => {
    const [nested] = parseIssues('version: 1\nunits:\n  - name: unit: x\n', 'yaml', 'rules.yaml')
    assert.equal(nested!.message, 'malformed YAML: Nested mappings are not allowed in compact mappings')
    assert.equal(nested!.file, 'rules.yaml')
    assert.deepEqual({ line: nested!.line, column: nested!.column }, { line: 3, column: 11 })
    const [reserved] = parseIssues('version: 1\ndescription: @x\n', 'yaml')
    assert.deepEqual({ line: reserved!.line, column: reserved!.column }, { line: 2, column: 14 })
  })

  it('rejects duplicate YAML keys, at the second key', () => {
    const issues = parseIssues(BASELINE_YAML + 'version: 2\n', 'yaml')
    assert.equal(issues.length, 1)
    assert.equal(issues[0]!.message, 'malformed YAML: Map keys must be unique')
    assert.deepEqual({ line: issues[0]!.line, column: issues[0]!.column }, { line: 17, column: 1 })
  })

  it('rejects a YAML stream of several documents', () => {
    const [issue] = parseIssues(`${BASELINE_YAML}---\n${BASELINE_YAML}`, 'yaml')
    assert.match(issue!.message, /^malformed YAML: Source contains multiple documents/)
  })

  it('turns a YAML alias bomb into a RuleInvalidError, not a crash', () => {
    const bomb = [
      'a: &a [x, x, x, x, x, x, x, x, x, x]',
      'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]',
      'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]',
      'd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]',
      '',
    ].join('\n')
    const [issue] = parseIssues(bomb, 'yaml', 'bomb.yaml')
    assert.equal(issue!.file, 'bomb.yaml')
    assert.match(issue!.message, /alias/i)
  })

  it('rejects an empty or whitespace-only file', () => {
    for (const format of ['json', 'yaml'] as const) {
      for (const text of ['', '   ', '\n\t \r\n']) {
        assert.deepEqual(parseIssues(text, format, `empty.${format}`), [
          { path: '', message: 'is empty', file: `empty.${format}` },
        ])
      }
    }
  })

  it('rejects a text larger than the limit before parsing it', () => {
    const issues = parseIssues(' '.repeat(MAX_TEXT_BYTES + 1), 'json')
    assert.deepEqual(issues, [{ path: '', message: `is larger than ${MAX_TEXT_BYTES} bytes` }])
  })

  it('rejects a top-level list or scalar with a clear message', () => {
    assert.deepEqual(parseIssues('- a\n- b\n', 'yaml'), [
      { path: '', message: 'expected an object, got a list' },
    ])
    assert.deepEqual(parseIssues('[1, 2]', 'json'), [{ path: '', message: 'expected an object, got a list' }])
    assert.deepEqual(parseIssues('42', 'json'), [{ path: '', message: 'expected an object, got number 42' }])
    assert.deepEqual(parseIssues('just text', 'yaml'), [
      { path: '', message: 'expected an object, got string "just text"' },
    ])
    assert.deepEqual(parseIssues('null', 'json'), [{ path: '', message: 'expected an object, got null' }])
    assert.deepEqual(parseIssues('# only a comment\n', 'yaml'), [
      { path: '', message: 'expected an object, got null' },
    ])
  })

  it('puts the file name in every issue and in the error message', () => {
    const text = JSON.stringify(baseline({ version: -1, units: [{ name: 'unit' }, { name: 'center' }] }))
    try {
      parseRuleSet(text, 'json', 'conf/rules.json')
      assert.fail('expected a throw')
    } catch (err) {
      assert.ok(err instanceof RuleInvalidError)
      assert.deepEqual(
        err.issues.map((i) => i.file),
        ['conf/rules.json'],
      )
      assert.equal(err.message, 'invalid rule set: conf/rules.json: version: version cannot be negative')
    }
    try {
      parseText('{', 'json', 'conf/rules.json')
      assert.fail('expected a throw')
    } catch (err) {
      assert.ok(err instanceof RuleInvalidError)
      assert.match(err.message, /^invalid file: conf\/rules\.json:1:2: malformed JSON/)
    }
  })

  it('reports every validation problem of a well-formed file, not only the first', () => {
    const issues = parseIssues(
      BASELINE_YAML.replace('center: true', 'center: false').replace('"0~1999"', '"0~2000"'),
      'yaml',
      'r.yaml',
    )
    assert.deepEqual(
      issues.map((i) => `${i.file} ${i.path}`),
      ['r.yaml units', 'r.yaml mapping[1].ranges[0]'],
    )
  })
})
