"""A real RTSP server for the tests: GStreamer's gst-rtsp-server, run by Debian's /usr/bin/python3.

Usage: ``/usr/bin/python3 gst_rtsp_server.py PORT none|basic|digest [USER PASSWORD]``

* ``/cam1`` serves MJPEG video to anyone (``videotestsrc ! jpegenc ! rtpjpegpay``).
* ``/cam2`` (``basic`` and ``digest`` only) needs USER/PASSWORD (default admin/secret), with
  that one scheme: a challenge for anonymous clients (401), 200 with the credentials.
* Any other path answers 404.

Needs the gi bindings, which live in Debian's system Python, not in the venv (python3-gi,
gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-base, gstreamer1.0-plugins-good). Pitfalls found
while writing it: without ``format=I420`` rtpjpegpay loops on "Invalid component" and DESCRIBE
hangs; a protected mount answers 404 rather than 401 unless the anonymous role may access it
(``media.factory.access=true, construct=false``); a *shared* media answers 503 to a DESCRIBE that
arrives while the previous client's copy is being unprepared (back-to-back checks: 12 of 30), so
each DESCRIBE gets its own media (0 of 150).
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

LAUNCH = (
    "( videotestsrc is-live=true ! video/x-raw,format=I420,width=160,height=120,framerate=5/1 "
    "! jpegenc ! rtpjpegpay name=pay0 pt=26 )"
)
ANONYMOUS_OPEN = "anonymous, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
ANONYMOUS_CHALLENGED = "anonymous, media.factory.access=(boolean)true, media.factory.construct=(boolean)false"
USER_OPEN = "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"


def factory(*roles: str) -> GstRtspServer.RTSPMediaFactory:
    f = GstRtspServer.RTSPMediaFactory.new()
    f.set_launch(LAUNCH)
    f.set_shared(False)
    for role in roles:
        f.add_role_from_structure(Gst.Structure.from_string(role)[0])
    return f


def token(role: str) -> GstRtspServer.RTSPToken:
    t = GstRtspServer.RTSPToken.new()
    t.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, role)
    return t


def main() -> None:
    port, mode = sys.argv[1], sys.argv[2]
    user, password = (sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 else ("admin", "secret")
    Gst.init(None)
    server = GstRtspServer.RTSPServer.new()
    server.set_address("127.0.0.1")
    server.set_service(port)
    mounts = server.get_mount_points()
    if mode == "none":
        mounts.add_factory("/cam1", factory())
    else:
        auth = GstRtspServer.RTSPAuth.new()
        if mode == "digest":
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            auth.add_digest(user, password, token("user"))
        else:
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token("user"))
        auth.set_default_token(token("anonymous"))
        server.set_auth(auth)
        mounts.add_factory("/cam1", factory(ANONYMOUS_OPEN))
        mounts.add_factory("/cam2", factory(USER_OPEN, ANONYMOUS_CHALLENGED))
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print(f"listening on rtsp://127.0.0.1:{port} ({mode})", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
