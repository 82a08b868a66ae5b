/*
 * ref-sspc-fetch: one Secure Streams client stream through a proxy, using the
 * reference's own proxy client code (libwebsockets built with
 * LWS_WITH_SECURE_STREAMS_PROXY_API, this file with LWS_SS_USE_SSPC), for
 * scripts/ref-sspc.sh.
 *
 *   ref-sspc-fetch -s STREAMTYPE -i +@SOCKET [-d LOGLEVEL]
 *
 * Connects the stream, writes every rx byte to stdout, and counts the rx
 * calls with SOM and with EOM that the application sees. (The reference
 * examples report rx through lws logging, which swallows identical
 * consecutive lines, so their logs cannot be used to count.) Ends when the
 * stream disconnects after an EOM: exit 0; else (retries exhausted, timeout,
 * no EOM) exit 1. The summary goes to stderr:
 * "ref-sspc-fetch: BYTES bytes, SOM N, EOM M".
 */

#define LWS_SS_USE_SSPC
#include <libwebsockets.h>
#include <signal.h>
#include <stdio.h>

static int interrupted, som, eom;
static size_t total;

typedef struct {
	struct lws_ss_handle	*ss;
	void			*opaque_data;
} fetch_t;

static lws_ss_state_return_t
fetch_rx(void *userobj, const uint8_t *buf, size_t len, int flags)
{
	if (flags & LWSSS_FLAG_PERF_JSON)
		return LWSSSSRET_OK;
	if (flags & LWSSS_FLAG_SOM)
		som++;
	if (flags & LWSSS_FLAG_EOM)
		eom++;
	if (len && fwrite(buf, 1, len, stdout) != len) {
		interrupted = 1;
		return LWSSSSRET_DESTROY_ME;
	}
	total += len;

	return LWSSSSRET_OK;
}

static lws_ss_state_return_t
fetch_state(void *userobj, void *sh, lws_ss_constate_t state,
	    lws_ss_tx_ordinal_t ack)
{
	fetch_t *f = (fetch_t *)userobj;

	switch (state) {
	case LWSSSCS_CREATING:
		return lws_ss_client_connect(f->ss);
	case LWSSSCS_DISCONNECTED:
		if (eom)
			interrupted = 1;
		break;
	case LWSSSCS_ALL_RETRIES_FAILED:
	case LWSSSCS_TIMEOUT:
		interrupted = 1;
		break;
	default:
		break;
	}

	return LWSSSSRET_OK;
}

static void
sigint_handler(int sig)
{
	interrupted = 1;
}

int
main(int argc, const char **argv)
{
	struct lws_context_creation_info info;
	struct lws_context *context;
	lws_ss_info_t ssi;
	const char *p;
	int n = 0;

	signal(SIGINT, sigint_handler);
	lws_context_info_defaults(&info, NULL);
	lws_cmdline_option_handle_builtin(argc, argv, &info);

	memset(&ssi, 0, sizeof(ssi));
	ssi.handle_offset = offsetof(fetch_t, ss);
	ssi.opaque_user_data_offset = offsetof(fetch_t, opaque_data);
	ssi.rx = fetch_rx;
	ssi.state = fetch_state;
	ssi.user_alloc = sizeof(fetch_t);
	ssi.streamtype = lws_cmdline_option(argc, argv, "-s");
	if (!ssi.streamtype) {
		fprintf(stderr, "usage: %s -s STREAMTYPE -i +@SOCKET\n", argv[0]);
		return 2;
	}

	info.port = CONTEXT_PORT_NO_LISTEN;
	info.fd_limit_per_thread = 1 + 6 + 1;
	info.protocols = lws_sspc_protocols;
	if ((p = lws_cmdline_option(argc, argv, "-i")))
		info.ss_proxy_bind = p;

	context = lws_create_context(&info);
	if (!context)
		return 2;
	if (lws_ss_create(context, 0, &ssi, NULL, NULL, NULL, NULL)) {
		lws_context_destroy(context);
		return 2;
	}
	while (n >= 0 && !interrupted)
		n = lws_service(context, 0);
	lws_context_destroy(context);
	fflush(stdout);

	fprintf(stderr, "ref-sspc-fetch: %zu bytes, SOM %d, EOM %d\n",
		total, som, eom);

	return eom ? 0 : 1;
}
