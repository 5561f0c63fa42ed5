import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { startEngineWorker } from '../worker/client';
import { App } from './App';
import './styles.css';

// `?chunkSize=` (bytes) lets the tests exercise chunk boundaries and resume with a tiny model.
const chunkSize = Number(new URLSearchParams(location.search).get('chunkSize')) || undefined;
const { engine } = startEngineWorker({ chunkSize });

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App engine={engine} />
  </StrictMode>,
);
