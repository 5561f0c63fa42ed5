import { useEffect, useState } from 'react';
import { applyUpdate, onUpdateReady, registerServiceWorker } from './register';

/**
 * Registers the service worker (production builds only) and, when a new version of the app has been
 * downloaded and is waiting, shows "Reload to update". Nothing reloads by itself, so a generation
 * in progress is never cut off; the user clicks when ready.
 */
export function UpdateBanner({ enabled = import.meta.env.PROD }: { enabled?: boolean }) {
  const [ready, setReady] = useState(false);
  useEffect(() => {
    if (!enabled) return;
    void registerServiceWorker();
    return onUpdateReady(setReady);
  }, [enabled]);
  if (!ready) return null;
  return (
    <div role="status" className="update-banner" data-testid="update-banner" style={bannerStyle}>
      <span>A new version of the app is ready.</span>
      <button type="button" onClick={applyUpdate} style={buttonStyle}>
        Reload to update
      </button>
    </div>
  );
}

// Inline styles keep the banner self-contained (no dependency on the app's stylesheet).
const bannerStyle: React.CSSProperties = {
  position: 'fixed',
  bottom: '1rem',
  left: '50%',
  transform: 'translateX(-50%)',
  display: 'flex',
  gap: '0.75rem',
  alignItems: 'center',
  padding: '0.6rem 1rem',
  borderRadius: '0.5rem',
  background: '#1e1b4b',
  color: '#fff',
  boxShadow: '0 4px 16px rgba(0,0,0,0.3)',
  zIndex: 1000,
};
const buttonStyle: React.CSSProperties = {
  padding: '0.3rem 0.8rem',
  borderRadius: '0.35rem',
  border: 'none',
  background: '#fbbf24',
  color: '#1e1b4b',
  fontWeight: 600,
  cursor: 'pointer',
};
