// A file straight to its signed upload URL with XMLHttpRequest, for upload progress (fetch has none).

import { ApiError, storageError } from './api.js';

export class UploadCancelled extends Error {
  constructor() {
    super('Upload cancelled');
    this.name = 'UploadCancelled';
  }
}

// What the browser says the file is; by its extension (the service's list of formats) when it does not know.
export function contentTypeOf(file, formats = []) {
  if (file.type) return file.type;
  const extension = `.${(file.name.split('.').pop() || '').toLowerCase()}`;
  const format = formats.find((f) => f.extensions.includes(extension));
  return format ? format.types[0] : 'application/octet-stream';
}

// PUT the raw file with its Content-Type (Supabase Storage's signed-upload wire format).
// Returns {promise, abort}; onProgress gets 0..1 as the bytes leave.
export function putFile(url, file, contentType, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open('PUT', url);
    xhr.setRequestHeader('Content-Type', contentType);
    xhr.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable && event.total > 0) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener('load', () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve();
      } else {
        reject(storageError(xhr.status, xhr.responseText));
      }
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, 'network_error',
      'The upload was interrupted. Check your connection and try again.')));
    xhr.addEventListener('abort', () => reject(new UploadCancelled()));
    xhr.send(file);
  });
  return { promise, abort: () => xhr.abort() };
}
