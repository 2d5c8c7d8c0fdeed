// The chat demo: model picker, capability line, download/upload progress, cache manager, streaming chat.
import { createEngine, type ChatCompletionRequest, type LoadProgress, type PreflightReport } from '../src/index.ts';
import { fmtBytes, formatPreflight } from '../src/engine/preflight-table.ts';
import type { ChatMessage } from '../src/text/index.ts';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const gb = (n: number) => (n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(2)} GB` : `${(n / (1 << 20)).toFixed(1)} MB`);

// A worker that cannot load is an error on the page, not a page that waits forever.
const engine = await createEngine().catch((e: unknown) => { showError(e); throw e; });
const history: ChatMessage[] = [];
let loaded = false;

function showError(e: unknown): void {
  $('error').textContent = e instanceof Error ? e.message : String(e);
}
engine.onError((m) => { loaded = false; showError(m); });

engine.capabilities().then((c) => {
  $('caps').textContent = `${c.adapter} · shader-f16 ${c.shaderF16 ? 'yes' : 'no'} · subgroups ${c.subgroups ? 'yes' : 'no'} · ` +
    `timestamp-query ${c.timestampQuery ? 'yes' : 'no'} · maxStorageBufferBindingSize ${gb(c.maxStorageBufferBindingSize)} · ` +
    `maxBufferSize ${gb(c.maxBufferSize)}`;
}, (e) => { $('caps').textContent = `WebGPU unavailable: ${e instanceof Error ? e.message : e}`; });

$('model-select').addEventListener('change', () => {
  $('model-custom').hidden = $<HTMLSelectElement>('model-select').value !== 'custom';
});

function chosenModel(): string {
  const v = $<HTMLSelectElement>('model-select').value;
  if (v === 'custom') return $<HTMLInputElement>('model-custom').value.trim();
  // The bundled model is served by this page's own server.
  if (v.startsWith('local:')) return new URL(v.slice(6), location.href).href.replace(/\/$/, '');
  return v;
}

function onProgress(p: LoadProgress): void {
  $('progress-box').hidden = false;
  const speed = p.bytesPerSecond ? ` · ${gb(p.bytesPerSecond)}/s` : '';
  const eta = p.etaSeconds && Number.isFinite(p.etaSeconds) ? ` · ${Math.ceil(p.etaSeconds)} s left` : '';
  $('progress-label').textContent = p.phase === 'compile'
    ? `Compiling kernels · ${p.bytesDone} / ${p.bytesTotal}`
    : p.phase === 'tune' ? 'Tuning kernels for this GPU (first load only)'
    : `${p.phase === 'download' ? 'Downloading' : 'Uploading to GPU'} ${p.file} · ${gb(p.bytesDone)} / ${gb(p.bytesTotal)}${speed}${eta}`;
  const file = $<HTMLProgressElement>('progress-file');
  file.max = p.fileBytesTotal ?? 1;
  file.value = p.fileBytesDone ?? (p.phase === 'download' ? 0 : 1);
  const all = $<HTMLProgressElement>('progress-all');
  all.max = p.bytesTotal || 1;
  all.value = p.bytesDone;
  all.dataset.phase = p.phase;
}

/** The pre-flight verdict above the progress bars: a one-line summary, the table when opened. */
function showPreflight(r: PreflightReport | Error): void {
  const box = $<HTMLDetailsElement>('preflight-box');
  box.hidden = false;
  box.classList.toggle('refused', !(r instanceof Error) && !r.fits);
  if (r instanceof Error) {
    // The check is advisory: when it cannot run, the load goes ahead and reports its own error if there is one.
    $('preflight-verdict').textContent = `Pre-flight check unavailable: ${r.message}`;
    $('preflight').textContent = '';
    return;
  }
  $('preflight-verdict').textContent = r.fits
    ? `Pre-flight: fits (${fmtBytes(r.totalBytes)} of a ${fmtBytes(r.budgetBytes)} budget; up to ${r.maxContextThatFits} tokens of context)`
    : `Pre-flight: does not fit (${fmtBytes(r.totalBytes)} of a ${fmtBytes(r.budgetBytes)} budget)`;
  $('preflight').textContent = formatPreflight(r);
  box.open = !r.fits;
}

let pendingSource: string | File[] | undefined;

/** Checks the model before the download starts; a model that does not fit waits for "Load anyway". */
async function load(source: string | File[], force = false): Promise<void> {
  showError('');
  $('load-anyway').hidden = true;
  $<HTMLButtonElement>('load').disabled = true;
  const contextLength = Number($<HTMLInputElement>('context').value) || undefined;
  const budgetGiB = Number($<HTMLInputElement>('budget').value);
  const memoryBudgetBytes = budgetGiB > 0 ? Math.floor(budgetGiB * 2 ** 30) : undefined;
  try {
    if (!force) {
      const report = await engine.preflight(source, { contextLength, memoryBudgetBytes }).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
      showPreflight(report);
      if (!(report instanceof Error) && !report.fits) {
        const hint = report.maxContextThatFits > 0 ? `Set the context to ${report.maxContextThatFits} or less, or press` : 'Press';
        showError(`Not loaded: ${report.reason}. ${hint} "Load anyway" to try regardless.`);
        pendingSource = source;
        $('load-anyway').hidden = false;
        return;
      }
    }
    const info = await engine.load(source, {
      contextLength,
      onProgress,
      name: Array.isArray(source) ? 'local folder' : undefined,
      // ?chunk=BYTES: smaller IndexedDB chunks (the e2e tests use it to cut a download between chunks).
      chunkBytes: Number(new URLSearchParams(location.search).get('chunk')) || undefined,
    });
    loaded = true;
    history.length = 0;
    $('log').replaceChildren();
    const tiny = typeof source === 'string' && source.includes('/models/qwen-webgpu-tiny');
    $('model-note').textContent = `Loaded ${info.modelId} (${info.config.numLayers} layers, context ${info.contextLength}).` +
      (tiny ? ' This is a TEST MODEL with random weights: its replies are gibberish by design.' : '');
    $('progress-label').textContent = 'Ready';
  } catch (e) {
    showError(e);
  } finally {
    $<HTMLButtonElement>('load').disabled = false;
    void refreshCache();
  }
}

$('load').addEventListener('click', () => void load(chosenModel()));
$('load-anyway').addEventListener('click', () => { if (pendingSource) void load(pendingSource, true); });
$<HTMLInputElement>('folder').addEventListener('change', (e) => {
  const files = [...((e.target as HTMLInputElement).files ?? [])];
  if (files.length) void load(files);
});

async function refreshCache(): Promise<void> {
  const list = $('cache-list');
  const models = await engine.cache.list();
  list.replaceChildren(...models.map((m) => {
    const li = document.createElement('li');
    li.textContent = `${m.modelId} · ${gb(m.bytes)}${m.complete ? '' : ' (partial)'}`;
    const del = document.createElement('button');
    del.textContent = 'Delete';
    del.addEventListener('click', async () => { await engine.cache.delete(m.modelId); await refreshCache(); });
    li.append(del);
    return li;
  }));
  if (!models.length) list.innerHTML = '<li class="muted">empty</li>';
}
$('cache-refresh').addEventListener('click', () => void refreshCache());
void refreshCache();

function bubble(cls: 'user' | 'assistant', text = ''): HTMLElement {
  const div = document.createElement('div');
  div.className = `msg ${cls}`;
  div.textContent = text;
  $('log').append(div);
  return div;
}

function num(id: string): number | undefined {
  const v = $<HTMLInputElement>(id).value;
  return v === '' ? undefined : Number(v);
}

async function send(): Promise<void> {
  const input = $<HTMLTextAreaElement>('input');
  const text = input.value.trim();
  if (!text || $<HTMLButtonElement>('send').disabled) return;
  if (!loaded) { showError('Load a model first.'); return; }
  showError('');
  input.value = '';
  bubble('user', text);
  history.push({ role: 'user', content: text });
  const system = $<HTMLTextAreaElement>('system').value.trim();
  const req: ChatCompletionRequest = {
    messages: system ? [{ role: 'system', content: system }, ...history] : [...history],
    stream: true,
    enable_thinking: $<HTMLInputElement>('thinking').checked,
    temperature: num('temperature'), top_p: num('top-p'), top_k: num('top-k'), min_p: num('min-p'),
    presence_penalty: num('presence'), repetition_penalty: num('repetition'), max_tokens: num('max-tokens'), seed: num('seed'),
  };
  const out = bubble('assistant');
  const think = document.createElement('details');
  think.innerHTML = '<summary>Thinking</summary><div class="thinking-text"></div>';
  const answer = document.createElement('div');
  answer.className = 'answer';
  out.append(answer);
  $<HTMLButtonElement>('send').disabled = true;
  $<HTMLButtonElement>('stop').disabled = false;
  let content = '';
  try {
    const stream = await engine.chat.completions.create(req as ChatCompletionRequest & { stream: true });
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      if (c.delta.reasoning_content) {
        if (!think.isConnected) out.prepend(think);
        think.querySelector('div')!.textContent += c.delta.reasoning_content;
      }
      if (c.delta.content) { content += c.delta.content; answer.textContent = content; }
      if (chunk.usage) {
        const u = chunk.usage;
        $('stats').textContent = `${u.completion_tokens} tokens · TTFT ${(u.extra.time_to_first_token_s * 1000).toFixed(0)} ms · ` +
          `prefill ${u.extra.prefill_tokens_per_s.toFixed(1)} tok/s · decode ${u.extra.decode_tokens_per_s.toFixed(1)} tok/s · ` +
          `reused ${u.extra.reused_prompt_tokens} prompt tokens · ${c.finish_reason}`;
      }
      $('log').scrollTop = $('log').scrollHeight;
    }
    history.push({ role: 'assistant', content });
  } catch (e) {
    history.pop();
    showError(e);
  } finally {
    $<HTMLButtonElement>('send').disabled = false;
    $<HTMLButtonElement>('stop').disabled = true;
  }
}

$<HTMLFormElement>('composer').addEventListener('submit', (e) => { e.preventDefault(); void send(); });
$('input').addEventListener('keydown', (e) => {
  if ((e as KeyboardEvent).key === 'Enter' && !(e as KeyboardEvent).shiftKey) { e.preventDefault(); void send(); }
});
$('stop').addEventListener('click', () => void engine.interrupt());
$('reset').addEventListener('click', async () => { history.length = 0; $('log').replaceChildren(); await engine.resetChat(); });

Object.assign(window, { qwenEngine: engine });
