#!/usr/bin/env node
// A real Y.js client (yjs + y-websocket over the `ws` package) that the Python tests drive, to check that our
// Y.js document server interoperates with the standard client.
//
//   node client.mjs --url ws://127.0.0.1:PORT/doc --room DOCUMENT_ID --token TOKEN --mode text|tiptap \
//     --type "SENTENCE" --expect-marks N --timeout-ms 20000 [--hold-ms N] [--expect-close] [--type-stdin]
//
// It connects to `${url}/${room}?token=${token}`, waits for `synced`, types the sentence (text mode: at the end of
// doc.getText('text'); tiptap mode: a new <paragraph> holding a Y.XmlText, appended to doc.getXmlFragment('default'),
// as Tiptap/y-prosemirror do), then waits until the text it typed carries at least N formatting marks under the
// attribute key `geo`.
//
// stdout is JSON lines only:
//   {"text": "Paris", "geo": {...}}                 one per mark, once N marks are seen
//   {"done": true, "elapsed_ms": ...}               then exit 0
//   {"done": false, "reason": ...}                  timeout (exit 1) or a usage / unexpected error (exit 1)
//   {"done": false, "reason": ..., "code": ..., "close_reason": ..., "error": ..., "http_status": ...}
//                                                   the connection failed or was closed (exit 2)
//   {"closed": true, "code": ..., "reason": ...}    with --expect-close: the server refused the socket (exit 0)
// Diagnostics go to stderr.

import process from 'node:process'
import { parseArgs } from 'node:util'

import WebSocket from 'ws'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'

const EXIT_OK = 0
const EXIT_FAILED = 1
const EXIT_CONNECTION = 2
const MARK_KEY = 'geo'

const started = Date.now()
const elapsed = () => Date.now() - started
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const log = (...args) => process.stderr.write(`[yjs-client +${elapsed()}ms] ${args.join(' ')}\n`)

let finishing = false
let provider = null
let lastSocket = null

/** Print the final line, disconnect cleanly (waiting briefly for the close handshake), and exit. */
const finish = async (code, line) => {
  if (finishing) return
  finishing = true
  if (line !== undefined) emit(line)
  const socket = lastSocket
  try {
    if (provider !== null) provider.destroy()
  } catch (err) {
    log('error while destroying the provider:', err?.stack ?? err)
  }
  if (socket !== null && socket.readyState !== WebSocket.CLOSED) {
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, 1000)
      socket.once('close', () => {
        clearTimeout(timer)
        resolve()
      })
    })
  }
  // process.exit would drop stdout data still buffered for a pipe: flush first.
  process.stdout.write('', () => process.exit(code))
}

const usage = (message) => {
  log(`usage error: ${message}`)
  emit({ done: false, reason: `usage: ${message}` })
  process.exit(EXIT_FAILED)
}

let args
try {
  args = parseArgs({
    options: {
      url: { type: 'string' },
      room: { type: 'string' },
      token: { type: 'string' },
      mode: { type: 'string', default: 'text' },
      type: { type: 'string', default: '' },
      'expect-marks': { type: 'string', default: '1' },
      'timeout-ms': { type: 'string', default: '20000' },
      'hold-ms': { type: 'string', default: '0' },
      'expect-close': { type: 'boolean', default: false },
      'type-stdin': { type: 'boolean', default: false }
    },
    strict: true,
    allowPositionals: false
  }).values
} catch (err) {
  usage(err.message)
}

const url = args.url
const room = args.room
const mode = args.mode
// --type-stdin: read the sentence from stdin instead (a single argv string is limited to 128 KiB on Linux).
let sentence = args.type
if (args['type-stdin']) {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  sentence = Buffer.concat(chunks).toString('utf8')
}
const expectMarks = Number.parseInt(args['expect-marks'], 10)
const timeoutMs = Number.parseInt(args['timeout-ms'], 10)
const holdMs = Number.parseInt(args['hold-ms'], 10)
const expectClose = args['expect-close']
if (!url) usage('--url is required')
if (!room) usage('--room is required')
if (mode !== 'text' && mode !== 'tiptap') usage(`--mode must be text or tiptap, not ${JSON.stringify(mode)}`)
if (!expectClose && sentence.length === 0) usage('--type must be a non-empty sentence')
if (!Number.isInteger(expectMarks) || expectMarks < 0) usage('--expect-marks must be an integer >= 0')
if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) usage('--timeout-ms must be a positive integer')
if (!Number.isInteger(holdMs) || holdMs < 0) usage('--hold-ms must be an integer >= 0')

// The `ws` WebSocket, remembering the last socket the provider opened (for a clean close) and the error that came
// before a close (e.g. "Unexpected server response: 403" when the server refused the handshake).
let lastError = null
class TrackedWebSocket extends WebSocket {
  constructor (address, protocols) {
    super(address, protocols)
    lastSocket = this
    lastError = null
    log('connecting to', String(address).replace(/([?&]token=)[^&]*/, '$1***'))
    this.on('error', (err) => {
      lastError = err
      log('socket error:', err?.message ?? err)
    })
  }
}

const doc = new Y.Doc()
let synced = false
let typed = null // what we typed: { kind: 'text', start: RelativePosition, end: RelativePosition } | { kind: 'xml', ytext }
let holding = false

/** The delta ops of the text we typed (attributes included), clipped to our insertion in text mode. */
const typedDelta = () => {
  if (typed === null) return []
  if (typed.kind === 'xml') return typed.ytext.toDelta()
  const ytext = doc.getText('text')
  const start = Y.createAbsolutePositionFromRelativePosition(typed.start, doc)
  const end = Y.createAbsolutePositionFromRelativePosition(typed.end, doc)
  if (start === null || end === null) return []
  const lo = start.index
  const hi = end.index + 1 // `end` sticks to our last character
  const ops = []
  let pos = 0
  for (const op of ytext.toDelta()) {
    const len = typeof op.insert === 'string' ? op.insert.length : 1
    const a = Math.max(pos, lo)
    const b = Math.min(pos + len, hi)
    if (a < b) {
      ops.push(typeof op.insert === 'string' ? { ...op, insert: op.insert.slice(a - pos, b - pos) } : op)
    }
    pos += len
  }
  return ops
}

const typedString = () =>
  typedDelta()
    .map((op) => (typeof op.insert === 'string' ? op.insert : ''))
    .join('')

const currentMarks = () =>
  typedDelta()
    .filter((op) => op.attributes != null && op.attributes[MARK_KEY] != null)
    .map((op) => ({ text: typeof op.insert === 'string' ? op.insert : op.insert, geo: op.attributes[MARK_KEY] }))

const checkMarks = () => {
  if (typed === null || holding || finishing) return
  const marks = currentMarks()
  if (marks.length < expectMarks) return
  holding = true
  const elapsedMs = elapsed()
  for (const mark of marks) emit(mark)
  log(`saw ${marks.length} mark(s)`)
  const done = () => finish(EXIT_OK, { done: true, elapsed_ms: elapsedMs, marks: marks.length })
  if (holdMs > 0) {
    log(`holding the connection for ${holdMs}ms`)
    setTimeout(done, holdMs)
  } else {
    done()
  }
}

const typeSentence = () => {
  if (mode === 'text') {
    const ytext = doc.getText('text')
    const index = ytext.length
    doc.transact(() => ytext.insert(index, sentence))
    typed = {
      kind: 'text',
      start: Y.createRelativePositionFromTypeIndex(ytext, index, 0),
      end: Y.createRelativePositionFromTypeIndex(ytext, index + sentence.length - 1, 0)
    }
    ytext.observe(checkMarks)
  } else {
    const fragment = doc.getXmlFragment('default')
    const paragraph = new Y.XmlElement('paragraph')
    const ytext = new Y.XmlText()
    doc.transact(() => {
      fragment.push([paragraph])
      paragraph.insert(0, [ytext])
      ytext.insert(0, sentence)
    })
    typed = { kind: 'xml', ytext }
    fragment.observeDeep(checkMarks)
  }
  const shown = sentence.length > 200 ? `${sentence.slice(0, 200)}... (${sentence.length} UTF-16 units)` : sentence
  log(`typed ${JSON.stringify(shown)} in ${mode} mode`)
  checkMarks()
}

const timer = setTimeout(() => {
  const reason = !synced
    ? 'timeout waiting for sync'
    : `timeout waiting for ${expectMarks} ${MARK_KEY} mark(s)`
  const text = typed === null ? null : typedString()
  finish(EXIT_FAILED, { done: false, reason, synced, marks: currentMarks(), text, timeout_ms: timeoutMs })
}, timeoutMs)
timer.unref?.()

provider = new WebsocketProvider(url, room, doc, {
  params: args.token === undefined ? {} : { token: args.token },
  WebSocketPolyfill: TrackedWebSocket,
  disableBc: true, // Node 20 has a global BroadcastChannel: keep this client to the socket only
  shouldReconnect: () => false // a dropped connection is a finding, not something to paper over
})

provider.on('status', ({ status }) => log('status:', status))

provider.on('sync', (isSynced) => {
  if (!isSynced || synced || finishing) return
  synced = true
  log('synced')
  if (expectClose) {
    finish(EXIT_FAILED, { done: false, reason: 'synced, but the server was expected to close the socket' })
    return
  }
  typeSentence()
})

provider.on('connection-close', (event) => {
  if (finishing || event === null) return // null: we closed it ourselves
  const code = event?.code ?? null
  const reason = event?.reason ?? ''
  const error = lastError?.message ?? null
  const httpStatus = /Unexpected server response: (\d+)/.exec(error ?? '')?.[1]
  const info = { code, reason, error, http_status: httpStatus === undefined ? null : Number(httpStatus) }
  log(`connection closed: ${JSON.stringify(info)}`)
  // The server answered (a close frame after the handshake, or an HTTP error instead of the upgrade) - as opposed
  // to a network failure (e.g. ECONNREFUSED) that says nothing about the server's decision.
  const serverDecided = httpStatus !== undefined || (code !== null && code !== 1006)
  if (expectClose && !synced && serverDecided) {
    finish(EXIT_OK, { closed: true, ...info })
  } else {
    const what = synced ? 'connection closed after sync' : 'connection closed before sync'
    const { reason: closeReason, ...rest } = info
    finish(EXIT_CONNECTION, { done: false, reason: what, synced, ...rest, close_reason: closeReason })
  }
})

process.on('uncaughtException', (err) => {
  log('uncaught exception:', err?.stack ?? err)
  finish(EXIT_FAILED, { done: false, reason: `uncaught exception: ${err?.message ?? err}` })
})
process.on('SIGTERM', () => finish(EXIT_FAILED, { done: false, reason: 'SIGTERM' }))
