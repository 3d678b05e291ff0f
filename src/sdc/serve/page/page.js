// The sdc page: record from the microphone (captured as PCM through Web Audio and sent as
// 16-bit WAV, which every server-side decoder reads) or send a dropped file; then show the
// digit, the top 3 as bars, and the digit string with its segments drawn on the waveform.
"use strict";

const $ = (id) => document.getElementById(id);
let model = null;
let recording = null;

function setState(state, message = "", isError = false) {
  document.body.dataset.state = state;
  $("status").textContent = message;
  $("status").classList.toggle("error", isError);
}

async function loadModel() {
  try {
    const response = await fetch("/v1/model");
    model = await response.json();
    $("model").textContent =
      `model: ${model.file} (${model.format}), ${model.sample_rate} Hz, ` +
      `up to ${model.limits.max_seconds} s a recording · sdc ${model.sdc_version}`;
  } catch (err) {
    $("model").textContent = `cannot reach the service: ${err}`;
  }
}

// ---- recording ---------------------------------------------------------------------------

async function startRecording() {
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
  } catch (err) {
    setState("error", `no microphone: ${err.message}`, true);
    return;
  }
  const context = new AudioContext();
  await context.audioWorklet.addModule("/static/recorder-worklet.js");
  const source = context.createMediaStreamSource(stream);
  const recorder = new AudioWorkletNode(context, "recorder");
  const chunks = [];
  recorder.port.onmessage = (event) => chunks.push(event.data);
  // A node must reach the destination to be pulled; a silent gain keeps the speakers quiet.
  const mute = context.createGain();
  mute.gain.value = 0;
  source.connect(recorder).connect(mute).connect(context.destination);
  const started = performance.now();
  const limit = model ? model.limits.max_seconds : 60;
  const timer = setInterval(() => {
    const seconds = (performance.now() - started) / 1000;
    $("elapsed").textContent = `${seconds.toFixed(1)} s`;
    if (seconds >= limit) stopRecording();
  }, 100);
  recording = { stream, context, chunks, timer };
  $("record").disabled = true;
  $("stop").disabled = false;
  setState("recording", "recording… press Stop when done");
}

async function stopRecording() {
  if (!recording) return;
  const { stream, context, chunks, timer } = recording;
  recording = null;
  clearInterval(timer);
  stream.getTracks().forEach((track) => track.stop());
  const rate = context.sampleRate;
  await context.close();
  $("record").disabled = false;
  $("stop").disabled = true;
  $("elapsed").textContent = "";
  const samples = concat(chunks);
  const wav = encodeWav(samples, rate);
  const link = $("download");
  if (link.href) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(wav);
  link.hidden = false;
  await recognize(wav, "audio/wav", samples, rate);
}

function concat(chunks) {
  const out = new Float32Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

function encodeWav(samples, rate) {
  const view = new DataView(new ArrayBuffer(44 + samples.length * 2));
  const text = (offset, s) => [...s].forEach((ch, i) => view.setUint8(offset + i, ch.charCodeAt(0)));
  text(0, "RIFF");
  view.setUint32(4, 36 + samples.length * 2, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  text(36, "data");
  view.setUint32(40, samples.length * 2, true);
  samples.forEach((x, i) => view.setInt16(44 + i * 2, Math.max(-1, Math.min(1, x)) * 0x7fff, true));
  return new Blob([view], { type: "audio/wav" });
}

// ---- a dropped or chosen file ------------------------------------------------------------

async function sendFile(file) {
  $("download").hidden = true;
  let samples = null;
  let rate = null;
  try {
    // Only for drawing: the server decodes the file itself, whatever the browser makes of it.
    const context = new OfflineAudioContext(1, 1, 8000);
    const audio = await context.decodeAudioData(await file.arrayBuffer());
    samples = audio.getChannelData(0);
    rate = audio.sampleRate;
  } catch (err) {
    samples = null;
  }
  await recognize(file, null, samples, rate);
}

// ---- asking the service and showing the answer ---------------------------------------------

async function post(path, audio, contentType) {
  let body = audio;
  const headers = {};
  if (contentType) {
    headers["Content-Type"] = contentType;
  } else {
    body = new FormData();
    body.append("file", audio, audio.name);
  }
  const response = await fetch(path, { method: "POST", body, headers });
  const json = await response.json();
  if (!response.ok) throw new Error(json.error || `HTTP ${response.status}`);
  return json;
}

async function recognize(audio, contentType, samples, rate) {
  setState("working", "listening to it…");
  try {
    const [prediction, transcript] = await Promise.all([
      post("/v1/predict", audio, contentType),
      post("/v1/transcribe", audio, contentType),
    ]);
    show(prediction, transcript, samples, rate);
    setState("done", `${prediction.duration.toFixed(2)} s of audio`);
  } catch (err) {
    $("result").hidden = true;
    setState("error", err.message, true);
  }
}

function show(prediction, transcript, samples, rate) {
  $("result").hidden = false;
  $("digit").textContent = prediction.digit ?? "–";
  const several = transcript.segments.length > 1;
  $("confidence").textContent = prediction.speech
    ? (several ? `the loudest of ${transcript.segments.length} utterances, ` : "") +
      `confidence ${(100 * prediction.confidence).toFixed(1)}%` +
      (prediction.digit === null ? " (below the threshold: no digit)" : "")
    : "no speech heard";
  const list = $("top3");
  list.replaceChildren(
    ...prediction.top.map(({ label, probability }) => {
      const item = document.createElement("li");
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.width = `${Math.max(1, 100 * probability)}%`;
      const name = document.createElement("span");
      name.textContent = label;
      const value = document.createElement("span");
      value.textContent = `${(100 * probability).toFixed(1)}%`;
      const track = document.createElement("div");
      track.append(bar);
      item.append(name, track, value);
      return item;
    }),
  );
  const long = model ? transcript.duration > model.window_seconds : false;
  $("transcript-block").hidden = !(long || several);
  $("transcript").textContent = transcript.text || "(no digits)";
  drawWaveform(samples, rate, transcript);
}

function drawWaveform(samples, rate, transcript) {
  const canvas = $("waveform");
  const g = canvas.getContext("2d");
  const { width, height } = canvas;
  g.clearRect(0, 0, width, height);
  const duration = samples ? samples.length / rate : transcript.duration;
  const x = (seconds) => (seconds / duration) * width;
  for (const s of transcript.segments) {
    g.fillStyle = s.digit === null ? "rgba(144,164,174,0.25)" : "rgba(21,101,192,0.16)";
    g.fillRect(x(s.start), 0, Math.max(2, x(s.end) - x(s.start)), height);
    g.fillStyle = "#0d47a1";
    g.font = "bold 20px system-ui, sans-serif";
    g.fillText(s.digit ?? "?", x(s.start) + 4, 22);
  }
  if (!samples) return;
  const step = Math.max(1, Math.floor(samples.length / width));
  let peak = 1e-6;
  for (const v of samples) peak = Math.max(peak, Math.abs(v));
  g.strokeStyle = "#37474f";
  g.beginPath();
  for (let px = 0; px < width; px++) {
    let low = 0;
    let high = 0;
    for (let i = px * step; i < Math.min(samples.length, (px + 1) * step); i++) {
      low = Math.min(low, samples[i]);
      high = Math.max(high, samples[i]);
    }
    g.moveTo(px + 0.5, height / 2 - (high / peak) * (height / 2 - 28));
    g.lineTo(px + 0.5, height / 2 - (low / peak) * (height / 2 - 28) + 1);
  }
  g.stroke();
}

// ---- wiring -----------------------------------------------------------------------------

$("record").addEventListener("click", startRecording);
$("stop").addEventListener("click", stopRecording);
$("file").addEventListener("change", (event) => {
  if (event.target.files.length) sendFile(event.target.files[0]);
});
const drop = $("drop");
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files.length) sendFile(event.dataTransfer.files[0]);
});
loadModel();
