/**
 * The page: pick a model (preset, URL, local file, cache), watch it download and load, then chat
 * (instruct models) or continue a prompt (base models). Talks to the engine only through the
 * EngineApi proxy; the load sequence lives in useModelSession (a reducer, session.ts). Model output
 * is rendered as text, or as Markdown with raw HTML off (markdown.ts), never as live HTML.
 */
import { type DragEvent, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { ConversationStore } from '../storage/conversations';
import type { Environment, GenerateOutcome, ModelInfo } from '../worker/api';
import { Comlink, type RemoteEngine } from '../worker/client';
import { CacheView } from './components/CacheView';
import { ChatView } from './components/ChatView';
import { type CompletionOutput, CompletionView, promptsOf } from './components/CompletionView';
import { DownloadDialog } from './components/DownloadDialog';
import { ErrorView } from './components/ErrorView';
import { ModelPicker, modelName, sourceName } from './components/ModelPicker';
import { SettingsPanel } from './components/SettingsPanel';
import { StatsView } from './components/StatsView';
import { DEMO_PRESET, presetFileLabel, presetOfUrl } from './presets';
import { UpdateBanner } from './pwa/UpdateBanner';
import {
  DEFAULT_SETTINGS,
  draftsOf,
  parseSettings,
  type SettingDrafts,
  samplingOf,
  seedFor,
} from './settings';
import { useModelCache, useModelSession } from './useModelSession';

type Mode = 'completion' | 'chat';

/** Downloads above this size are confirmed first. */
const BIG_DOWNLOAD = 500e6;

/** The file to download, for people: the preset's label, else the URL's file name. */
function downloadName(url: string): string {
  const selected = presetOfUrl(url);
  return selected ? presetFileLabel(selected.preset, selected.file) : sourceName({ kind: 'url', url });
}

/** Instruct models open in chat, base models in completion: by the preset, else by the name. */
export function isInstruct(model: ModelInfo): boolean {
  const preset = model.id ? presetOfUrl(model.id)?.preset : undefined;
  if (preset) return preset.kind === 'instruct';
  return /instruct|[-_ ]chat|[-_ ]it\b/i.test(`${model.config.name} ${model.name}`);
}

export function App({
  engine,
  confirmAbove = BIG_DOWNLOAD,
}: {
  engine: RemoteEngine;
  /** Downloads above this many bytes are confirmed first (the e2e build sets it lower). */
  confirmAbove?: number;
}) {
  const [env, setEnv] = useState<Environment>();
  // `?model=<url>` in the address names the model; otherwise the bundled demo is selected.
  const [addressModel] = useState(() => new URLSearchParams(location.search).get('model'));
  const [url, setUrl] = useState(() => addressModel ?? DEMO_PRESET.url);
  const cache = useModelCache(engine);
  const {
    state: session,
    dispatch,
    load,
    whenLoaded,
    runGeneration,
    loadCount,
  } = useModelSession(engine, cache.refresh);
  const { busy, model } = session;
  const modelRef = useRef(model);
  modelRef.current = model;
  const [persisted, setPersisted] = useState<boolean>();
  const [mode, setMode] = useState<Mode>('completion');
  const [batch, setBatch] = useState(false);
  const [prompt, setPrompt] = useState('');
  const [drafts, setDrafts] = useState<SettingDrafts>(() => draftsOf(DEFAULT_SETTINGS));
  const [fixedSeed, setFixedSeed] = useState(DEFAULT_SETTINGS.fixedSeed);
  const [outputs, setOutputs] = useState<CompletionOutput[]>([]);
  const [result, setResult] = useState<GenerateOutcome>();
  const [dragging, setDragging] = useState(false);
  const [store, setStore] = useState<ConversationStore>();
  /** A large download waiting for the user's answer in the download dialog. */
  const [downloadAsk, setDownloadAsk] = useState<{ url: string; bytes: number; refresh?: boolean }>();
  const askedPersist = useRef(false);
  const autoLoaded = useRef(false);
  /** The user has picked or typed a model: the page never replaces their choice. */
  const userChose = useRef(false);
  /** The URL box had the focus: its text is the user's, even before they type. */
  const urlTouched = useRef(false);

  const parsed = useMemo(() => parseSettings(drafts, fixedSeed), [drafts, fixedSeed]);
  const settings = parsed.settings;

  /** A load the user asked for (button, preset, file, cache entry): their choice from now on. */
  const userLoad = useCallback(
    (spec: Parameters<typeof load>[0]) => {
      userChose.current = true;
      return load(spec);
    },
    [load],
  );

  // A new model picks its mode: chat for instruct models, completion for base models.
  useEffect(() => {
    if (model) setMode(isInstruct(model) ? 'chat' : 'completion');
  }, [model]);

  // Persistent storage matters for real models (gigabytes), not for the bundled demo: ask once,
  // when one is cached.
  useEffect(() => {
    if (!model?.cached || model.id === DEMO_PRESET.url || askedPersist.current) return;
    if (!navigator.storage?.persist) return;
    askedPersist.current = true;
    navigator.storage.persist().then(setPersisted, () => setPersisted(false));
  }, [model]);

  // A returning user with saved conversations sees them first (until a base model loads).
  useEffect(() => {
    ConversationStore.open().then(
      async (opened) => {
        setStore(opened);
        const saved = await opened.list().catch(() => []);
        if (saved.length > 0 && !modelRef.current) setMode('chat');
      },
      () => {},
    );
  }, []);

  useEffect(() => {
    const environment = engine.environment().then(
      (e) => e,
      (e): Environment => ({ webgpu: false, problem: String(e) }),
    );
    environment.then(setEnv);
    cache.refresh();
    navigator.storage?.persisted?.().then(setPersisted, () => {});
    if (autoLoaded.current) return; // React's StrictMode runs this effect twice in development
    autoLoaded.current = true;
    if (addressModel) {
      load({ kind: 'url', url: addressModel });
      return;
    }
    // First visit (no other model cached): load the bundled demo from this site right away, so the
    // page is ready for a prompt. A real model already in the cache (gigabytes) is selected instead,
    // and loads when the user asks. Either way a choice the user made meanwhile wins.
    Promise.all([environment, engine.listCached()]).then(
      ([gpu, list]) => {
        if (userChose.current || loadCount() > 0) return;
        const others = list
          .filter((c) => c.complete && c.url !== DEMO_PRESET.url)
          .sort((a, b) => b.updatedAt - a.updatedAt);
        if (others.length > 0) setUrl((u) => (urlTouched.current ? u : others[0].url));
        else if (gpu.webgpu) load({ kind: 'url', url: DEMO_PRESET.url });
      },
      () => {},
    );
  }, [engine, cache.refresh, load, addressModel, loadCount]);

  /**
   * Waits for a model before a generation: pressed while one loads (the demo on a first visit), it
   * starts when the load is done; with nothing loaded and the demo selected, it loads the demo first.
   */
  const ready = useCallback(async (): Promise<boolean> => {
    if (model && busy !== 'loading') return true;
    if (busy === 'idle') {
      if (url !== DEMO_PRESET.url) return false;
      load({ kind: 'url', url });
    }
    dispatch({ type: 'queued', queued: true });
    const ok = await whenLoaded();
    dispatch({ type: 'queued', queued: false });
    return ok;
  }, [model, busy, url, load, whenLoaded, dispatch]);

  const prompts = promptsOf(prompt, batch);

  // A preset's file (its q4_0 default or its Q4_K_M) that is not here yet: one "Download" button.
  const selectedFile = presetOfUrl(url)?.file;
  const pendingDownload =
    selectedFile &&
    selectedFile.url !== DEMO_PRESET.url &&
    model?.id !== selectedFile.url &&
    !cache.cached.some((c) => c.complete && c.url === selectedFile.url)
      ? { url: selectedFile.url, approxBytes: selectedFile.approxBytes }
      : undefined;

  /**
   * A load by URL the user asked for; a download of more than `confirmAbove` bytes that is not
   * cached is confirmed first in the download dialog, with its size and GPU memory (one HEAD; when
   * the server does not answer, the load itself says why).
   */
  const confirmedLoad = async (u: string, refresh?: boolean) => {
    const cachedCopy = cache.cached.find((c) => c.url === u && c.complete);
    // Without WebGPU the load is refused before any byte is fetched: no size question, no HEAD.
    if ((!cachedCopy || refresh) && env?.webgpu !== false) {
      const size = await engine.probe(u).then(
        (p) => (p.complete && !refresh ? 0 : (p.size ?? 0) - p.cachedBytes),
        () => 0,
      );
      if (size > confirmAbove) {
        setDownloadAsk({ url: u, bytes: size, refresh });
        return;
      }
    }
    userLoad({ kind: 'url', url: u, refresh });
  };
  const inspect = useCallback((u: string) => engine.inspect(u), [engine]);

  const generate = async () => {
    if (!settings || busy === 'generating' || session.queued || prompts.every((p) => p.length === 0)) return;
    if (!(await ready())) return;
    setResult(undefined);
    setOutputs(prompts.map((p) => ({ prompt: p, text: '' })));
    const r = await runGeneration(() =>
      engine.generate(
        { prompts, mode: 'completion', maxTokens: settings.maxTokens, sampling: samplingOf(settings) },
        Comlink.proxy(({ seq, delta }: { seq: number; delta: string }) => {
          if (!delta) return;
          setOutputs((o) => o.map((x, i) => (i === seq ? { ...x, text: x.text + delta } : x)));
        }),
      ),
    );
    if (!r) return;
    // The final text is authoritative (a split multi-byte character may still be pending).
    setOutputs(prompts.map((p, i) => ({ prompt: p, text: r.text[i] ?? '' })));
    setResult(r);
  };

  const stop = () => {
    engine.interrupt();
  };

  const openFile = (file: File | undefined) => {
    if (!file) return;
    if (!file.name.toLowerCase().endsWith('.gguf')) {
      dispatch({
        type: 'error',
        error: {
          code: 'bad-gguf',
          message: `${file.name} is not a .gguf file. Pick a GGUF model file (for example Llama-3.2-1B-Instruct-Q4_0.gguf).`,
        },
      });
      return;
    }
    userLoad({ kind: 'file', file });
  };

  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    setDragging(false);
    openFile(e.dataTransfer.files[0]);
  };

  const canGenerate =
    !!settings &&
    (!!model || url === DEMO_PRESET.url || busy === 'loading') &&
    busy !== 'generating' &&
    !session.queued &&
    prompts.some((p) => p.length > 0);

  const modeSwitch = (
    <fieldset className="segmented">
      <legend className="visually-hidden">Mode</legend>
      <label>
        <input
          type="radio"
          name="mode"
          checked={mode === 'completion'}
          onChange={() => setMode('completion')}
        />
        Completion
      </label>
      <label>
        <input type="radio" name="mode" checked={mode === 'chat'} onChange={() => setMode('chat')} />
        Chat
      </label>
    </fieldset>
  );
  const settingsPanel = (
    <SettingsPanel
      drafts={drafts}
      problems={parsed.problems ?? {}}
      fixedSeed={fixedSeed}
      onDraft={(key, text) => setDrafts((d) => ({ ...d, [key]: text }))}
      onFixedSeed={setFixedSeed}
    />
  );

  return (
    // biome-ignore lint/a11y/noStaticElementInteractions: the whole page is a drop target for .gguf files
    <div
      className={`app${dragging ? ' dragging' : ''}`}
      onDragOver={(e) => {
        e.preventDefault();
        setDragging(true);
      }}
      onDragLeave={() => setDragging(false)}
      onDrop={onDrop}
    >
      <UpdateBanner />
      <header className="top">
        <h1>Llama 3 on WebGPU</h1>
        <p className="tagline">Runs entirely in your browser. Weights are cached on this device.</p>
        {env?.webgpu && env.adapter && <p className="hint adapter">GPU: {env.adapter}</p>}
      </header>

      <main>
        {env && !env.webgpu && (
          <div className="banner error" role="alert">
            <strong>WebGPU is not available.</strong> {env.problem}
          </div>
        )}

        <ModelPicker
          session={session}
          url={url}
          persisted={persisted}
          anyCached={cache.cached.length > 0}
          pendingDownload={pendingDownload}
          inspect={inspect}
          onPreset={(u) => {
            userChose.current = true;
            setUrl(u);
            // The demo and cached models load at once; others show one "Download" button.
            if (u === DEMO_PRESET.url || cache.cached.some((c) => c.complete && c.url === u)) {
              if (model?.id !== u) userLoad({ kind: 'url', url: u });
            }
          }}
          onUrlFocus={() => {
            urlTouched.current = true;
          }}
          onUrlChange={(u) => {
            userChose.current = true;
            setUrl(u);
          }}
          onLoadUrl={(u, refresh) => confirmedLoad(u, refresh)}
          onFile={openFile}
          onStop={stop}
        />

        {session.error && (
          <ErrorView
            error={session.error}
            failedLoad={
              session.failedLoad && {
                name: sourceName(session.failedLoad.spec),
                stillUsing: session.failedLoad.stillUsing && modelName(session.failedLoad.stillUsing),
              }
            }
            onReload={
              session.lastSource ? () => session.lastSource && userLoad(session.lastSource) : undefined
            }
          />
        )}

        <section className="card generate" aria-labelledby="gen-h">
          <h2 id="gen-h">{mode === 'chat' ? 'Chat' : 'Generate'}</h2>
          {mode === 'chat' ? (
            <ChatView
              engine={engine}
              store={store}
              model={model}
              baseModel={!!model && !isInstruct(model)}
              generating={busy === 'generating'}
              settings={settings}
              seedFor={seedFor}
              runner={{ ready, run: runGeneration }}
              onStop={stop}
              controls={modeSwitch}
              settingsPanel={settingsPanel}
            />
          ) : (
            <CompletionView
              prompt={prompt}
              batch={batch}
              generating={busy === 'generating'}
              queued={session.queued}
              canGenerate={canGenerate}
              outputs={outputs}
              result={result}
              settings={settingsPanel}
              stats={result && <StatsView stats={result.stats} model={model} />}
              controls={modeSwitch}
              onPrompt={setPrompt}
              onBatch={setBatch}
              onGenerate={generate}
              onStop={stop}
            />
          )}
        </section>

        {downloadAsk && (
          <DownloadDialog
            name={downloadName(downloadAsk.url)}
            url={downloadAsk.url}
            bytes={downloadAsk.bytes}
            limits={env?.limits}
            inspect={inspect}
            onCancel={() => setDownloadAsk(undefined)}
            onDownload={() => {
              setDownloadAsk(undefined);
              userLoad({ kind: 'url', url: downloadAsk.url, refresh: downloadAsk.refresh });
            }}
          />
        )}

        <CacheView
          cached={cache.cached}
          storage={cache.storage}
          persisted={persisted}
          busy={busy}
          loadedId={model?.id}
          onLoad={(c) => {
            setUrl(c.url);
            userLoad({ kind: 'url', url: c.url });
          }}
          onDelete={async (c) => {
            await engine.deleteCached(c.id).catch(() => {});
            cache.refresh();
          }}
        />
      </main>
    </div>
  );
}
