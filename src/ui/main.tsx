import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { startEngineWorker } from '../worker/client';
import { App } from './App';
import './styles.css';
import { testHooks } from './test-hooks';

// The e2e build's hooks (`?chunkSize=`, `?confirmAbove=`); an empty object in every other build.
const hooks = testHooks(location.search);
const { engine } = startEngineWorker({ chunkSize: hooks.chunkSize });

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App engine={engine} confirmAbove={hooks.confirmAbove} />
  </StrictMode>,
);
