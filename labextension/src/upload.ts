// Resumable uploads into uploads/NAME over the server's upload protocol (the one `spell upload`
// uses): declare the file, learn what the server already holds of it, send the rest in chunks,
// commit. A file dropped again after a cut resumes where the server stopped.
import { ServerConnection } from '@jupyterlab/services';

import { apiUrl, failure, request } from './api';

const CHUNK = 8 << 20; // bytes per request (the server takes up to 64 MiB)

/** Upload `blob` as uploads/`name`; `onProgress(bytes held)`. Returns the SpellFS path. */
export async function uploadFile(
  name: string,
  blob: Blob,
  onProgress: (held: number) => void
): Promise<string> {
  const begun = await request<{
    name: string;
    received: Record<string, number>;
  }>('uploads', {
    method: 'POST',
    body: JSON.stringify({ name, files: [{ path: '', size: blob.size }] })
  });
  let held = begun.received[''] ?? 0;
  onProgress(held);
  const settings = ServerConnection.makeSettings();
  while (held < blob.size) {
    const query = new URLSearchParams({
      name: begun.name,
      path: '',
      offset: String(held)
    });
    const response = await ServerConnection.makeRequest(
      apiUrl(`uploads/chunk?${query}`),
      { method: 'PUT', body: blob.slice(held, held + CHUNK) },
      settings
    );
    if (!response.ok) {
      throw await failure(response);
    }
    held = ((await response.json()) as { received: number }).received;
    onProgress(held);
  }
  const made = await request<{ path: string }>('uploads/commit', {
    method: 'POST',
    body: JSON.stringify({ name: begun.name })
  });
  return made.path;
}
