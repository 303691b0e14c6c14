// The dashboard's only way to the server: the public /v1 API, with the key the user
// pasted (kept in sessionStorage, so it goes with the tab). A 401 sends the user back
// to the key prompt; any other error carries the API's own message.
import { fetchEventSource } from "../vendor/fetch-event-source-2.0.1/index.js";

const KEY = "shardtrain.apiKey";
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || null;
    this.param = error.param || null;
  }
}

export const key = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

// Called with a message when the key stops working (expired, revoked, never valid).
export function onSignedOut(listener) {
  listeners.add(listener);
}

function signedOut(message) {
  key.clear();
  for (const listener of listeners) listener(message);
}

function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${key.get() || ""}`, ...extra };
}

export async function request(method, path, { json, body, headers, raw } = {}) {
  const init = { method, headers: authHeaders(headers) };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, { error: { message: `The API did not answer: ${error.message}` } });
  }
  if (response.status === 401) {
    const answer = await response.json().catch(() => ({}));
    const error = new ApiError(401, answer);
    signedOut(error.message);
    throw error;
  }
  if (!response.ok) {
    throw new ApiError(response.status, await response.json().catch(() => ({})));
  }
  if (raw) return response;
  return response.status === 204 ? null : response.json();
}

export const get = (path) => request("GET", path);
export const post = (path, json) => request("POST", path, { json });

// A worker may write the object between the API's read and its write (a round merged
// as a cancel lands): `409 conflict` asks to retry, which then acts on the new state.
export async function postRetryingConflicts(path, json, attempts = 4) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await post(path, json);
    } catch (error) {
      if (error.code !== "conflict" || attempt >= attempts) throw error;
      await new Promise((resolve) => setTimeout(resolve, 300 * attempt));
    }
  }
}
export const del = (path) => request("DELETE", path);

// Follow an object's events (`/v1/jobs/{id}/events`, `/v1/sweeps/{id}/events`) until
// the server ends the stream (the object ended) or `controller.abort()`.
export function follow(path, onEvent, controller) {
  return fetchEventSource(path, {
    headers: authHeaders(),
    signal: controller.signal,
    openWhenHidden: true,
    onopen: async (response) => {
      if (response.status === 401) {
        signedOut((await response.json().catch(() => ({}))).error?.message || "");
        throw new ApiError(401, {});
      }
      if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => ({})));
    },
    onmessage: (message) => {
      if (message.data) onEvent(JSON.parse(message.data));
    },
    onclose: () => {
      // The server closes once the object has ended: do not reconnect.
      throw new StreamEnded();
    },
    onerror: (error) => {
      if (error instanceof StreamEnded || error instanceof ApiError) throw error;
      return 2000; // a dropped connection: retry, resuming after the last event
    },
  }).catch((error) => {
    if (!(error instanceof StreamEnded) && error.name !== "AbortError") throw error;
  });
}

class StreamEnded extends Error {}

// Upload with progress: fetch has no upload progress, XMLHttpRequest does.
export function upload(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/datasets");
    xhr.setRequestHeader("Authorization", `Bearer ${key.get() || ""}`);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    xhr.onload = () => {
      let answer = {};
      try {
        answer = JSON.parse(xhr.responseText);
      } catch (error) {
        answer = {};
      }
      if (xhr.status === 401) signedOut(answer.error?.message || "");
      if (xhr.status >= 200 && xhr.status < 300) resolve(answer);
      else reject(new ApiError(xhr.status, answer));
    };
    xhr.onerror = () => reject(new ApiError(0, { error: { message: "The upload was cut off." } }));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

// A download that needs the key: fetched, then handed to the browser as a file.
export async function download(path, filename) {
  const response = await request("GET", path, { raw: true });
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  URL.revokeObjectURL(url);
}
