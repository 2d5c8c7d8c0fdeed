// <qwen-chat model="org/name" system="…" thinking context-length="4096" temperature="0.7" max-tokens="512">
// A self-contained chat box over the worker engine. Theme it with CSS variables (--qwen-accent, --qwen-bg,
// --qwen-fg, --qwen-radius, --qwen-font) and parts (::part(log), ::part(input), ::part(send), ::part(stop),
// ::part(progress), ::part(user), ::part(assistant), ::part(thinking)).
// Events: qwen-progress {phase, bytesDone, bytesTotal, file}, qwen-token {content?, reasoning?}, qwen-done
// {message, usage, finish_reason}, qwen-error {message}.
import { createEngine, type QwenEngine } from '../worker/client.ts';
import type { ChatMessage } from '../api.ts';

const STYLE = `
:host { display: block; font: 14px/1.45 var(--qwen-font, system-ui, sans-serif); color: var(--qwen-fg, #1d1d1f);
  background: var(--qwen-bg, #fff); border: 1px solid #d0d0d7; border-radius: var(--qwen-radius, 10px); overflow: hidden; }
.log { height: var(--qwen-height, 320px); overflow-y: auto; padding: 12px; display: flex; flex-direction: column; gap: 8px; }
.msg { white-space: pre-wrap; padding: 8px 10px; border-radius: var(--qwen-radius, 10px); max-width: 85%; }
.user { align-self: flex-end; background: var(--qwen-accent, #3a6df0); color: #fff; }
.assistant { align-self: flex-start; background: #f1f1f4; }
details { font-size: 12px; color: #666; }
form { display: flex; gap: 6px; padding: 8px; border-top: 1px solid #e4e4ea; }
textarea { flex: 1; resize: none; font: inherit; padding: 6px; border-radius: 6px; border: 1px solid #ccc; }
button { font: inherit; padding: 6px 12px; border-radius: 6px; border: 0; background: var(--qwen-accent, #3a6df0); color: #fff; cursor: pointer; }
button[disabled] { opacity: .5; cursor: default; }
progress { width: 100%; display: block; }
progress[hidden] { display: none; }
.status { font-size: 12px; color: #666; padding: 0 12px 6px; min-height: 1em; }
`;

export class QwenChatElement extends HTMLElement {
  static observedAttributes = ['model', 'system', 'thinking', 'context-length', 'temperature', 'max-tokens'];
  private engine?: Promise<QwenEngine>;
  private loaded?: Promise<void>;
  private loadedModel?: string;
  private history: ChatMessage[] = [];
  private root: ShadowRoot;
  private els: { log: HTMLElement; input: HTMLTextAreaElement; send: HTMLButtonElement; stop: HTMLButtonElement; progress: HTMLProgressElement; status: HTMLElement };

  constructor() {
    super();
    this.root = this.attachShadow({ mode: 'open' });
    this.root.innerHTML = `<style>${STYLE}</style>
      <progress part="progress" hidden></progress>
      <div class="status" part="status"></div>
      <div class="log" part="log" role="log" aria-live="polite"></div>
      <form><textarea part="input" rows="2" placeholder="Message"></textarea>
      <button part="send" type="submit">Send</button><button part="stop" type="button" disabled>Stop</button></form>`;
    const q = <T extends Element>(s: string) => this.root.querySelector(s) as T;
    this.els = {
      log: q('.log'), input: q('textarea'), send: q('button[type=submit]'), stop: q('button[type=button]'),
      progress: q('progress'), status: q('.status'),
    };
    q<HTMLFormElement>('form').addEventListener('submit', (e) => { e.preventDefault(); void this.send(this.els.input.value); });
    this.els.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); void this.send(this.els.input.value); }
    });
    this.els.stop.addEventListener('click', () => void this.engine?.then((en) => en.interrupt()));
  }

  connectedCallback(): void {
    if (this.getAttribute('model')) void this.ensureLoaded().catch(() => {});
  }

  attributeChangedCallback(name: string, old: string | null, value: string | null): void {
    if (name === 'model' && old !== value && this.isConnected && value) {
      this.loaded = undefined;
      this.history = [];
      void this.ensureLoaded().catch(() => {});
    }
  }

  private fire(type: string, detail: unknown): void {
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
  }

  private lastError?: unknown;

  private fail(e: unknown): void {
    // A failed load reaches here twice (the load itself and the send that waited on it): report it once.
    if (e === this.lastError) return;
    this.lastError = e;
    const message = e instanceof Error ? e.message : String(e);
    this.els.status.textContent = `Error: ${message}`;
    this.fire('qwen-error', { message });
  }

  private ensureLoaded(): Promise<void> {
    const model = this.getAttribute('model');
    if (!model) return Promise.reject(new Error('<qwen-chat> needs a model attribute'));
    if (this.loaded && this.loadedModel === model) return this.loaded;
    if (!this.engine) {
      const engine = createEngine().then((en) => { en.onError((m) => this.fail(new Error(m))); return en; });
      // A worker that failed to start is not kept: the next attempt starts a fresh one.
      engine.catch(() => { if (this.engine === engine) this.engine = undefined; });
      this.engine = engine;
    }
    this.loadedModel = model;
    const ctxLen = Number(this.getAttribute('context-length')) || undefined;
    this.els.progress.hidden = false;
    this.els.status.textContent = `Loading ${model}…`;
    // "/path", "./path" and "../path" are folders on this site, relative to the page; anything else is a URL or repo id.
    const url = /^\.{0,2}\//.test(model) ? new URL(model, location.href).href.replace(/\/$/, '') : model;
    this.loaded = this.engine.then((en) => en.load(url, {
      contextLength: ctxLen,
      onProgress: (p) => {
        this.els.progress.max = p.bytesTotal || 1;
        this.els.progress.value = p.bytesDone;
        this.els.status.textContent = p.phase === 'compile' ? 'Compiling kernels'
          : p.phase === 'tune' ? 'Tuning kernels for this GPU'
          : `${p.phase === 'download' ? 'Downloading' : 'Uploading to GPU'} ${p.file}`;
        this.fire('qwen-progress', p);
      },
    })).then(() => {
      this.els.progress.hidden = true;
      this.els.status.textContent = '';
    });
    this.loaded.catch((e) => { this.loaded = undefined; this.fail(e); });
    return this.loaded;
  }

  private bubble(cls: 'user' | 'assistant', text: string): HTMLElement {
    const div = document.createElement('div');
    div.className = `msg ${cls}`;
    div.setAttribute('part', cls);
    div.textContent = text;
    this.els.log.append(div);
    this.els.log.scrollTop = this.els.log.scrollHeight;
    return div;
  }

  /** Sends a user message; resolves when the reply is complete. */
  async send(text: string): Promise<void> {
    text = text.trim();
    if (!text || this.els.send.disabled) return;
    this.els.input.value = '';
    this.bubble('user', text);
    this.els.send.disabled = true;
    try {
      await this.ensureLoaded();
      const engine = await this.engine!;
      const system = this.getAttribute('system');
      this.history.push({ role: 'user', content: text });
      const messages: ChatMessage[] = system ? [{ role: 'system', content: system }, ...this.history] : [...this.history];
      const temperature = this.getAttribute('temperature');
      const out = this.bubble('assistant', '');
      const thinking = document.createElement('details');
      thinking.setAttribute('part', 'thinking');
      thinking.innerHTML = '<summary>Thinking</summary><div></div>';
      const thinkText = thinking.querySelector('div')!;
      const answer = document.createElement('span');
      out.append(answer);
      this.els.stop.disabled = false;
      const stream = await engine.chat.completions.create({
        messages, stream: true, enable_thinking: this.hasAttribute('thinking'),
        ...(temperature !== null ? { temperature: Number(temperature) } : {}),
        ...(this.getAttribute('max-tokens') ? { max_tokens: Number(this.getAttribute('max-tokens')) } : {}),
      });
      let content = '';
      for await (const chunk of stream) {
        const c = chunk.choices[0];
        if (c.delta.reasoning_content) {
          if (!thinking.isConnected) out.prepend(thinking);
          thinkText.textContent += c.delta.reasoning_content;
        }
        if (c.delta.content) { content += c.delta.content; answer.textContent = content; }
        if (c.delta.content || c.delta.reasoning_content) {
          this.fire('qwen-token', { content: c.delta.content, reasoning: c.delta.reasoning_content });
        }
        if (c.finish_reason) {
          this.history.push({ role: 'assistant', content });
          this.fire('qwen-done', { message: content, usage: chunk.usage, finish_reason: c.finish_reason });
        }
        this.els.log.scrollTop = this.els.log.scrollHeight;
      }
    } catch (e) {
      // Keep the history a valid conversation: drop the question that got no answer.
      if (this.history.at(-1)?.role === 'user') this.history.pop();
      this.fail(e);
    } finally {
      this.els.send.disabled = false;
      this.els.stop.disabled = true;
    }
  }
}

if (!customElements.get('qwen-chat')) customElements.define('qwen-chat', QwenChatElement);

declare global {
  interface HTMLElementTagNameMap { 'qwen-chat': QwenChatElement }
}
