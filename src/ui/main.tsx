import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { startEngineWorker } from '../worker/client';
import { App } from './App';
import './styles.css';
import { testHooks } from './test-hooks';

// The e2e build's hooks (`?chunkSize=`); an empty object in every other build.
const { engine } = startEngineWorker(testHooks(location.search));

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App engine={engine} />
  </StrictMode>,
);
