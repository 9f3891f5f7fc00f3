/*
 * clientid_owner: a Mosquitto 2.0 plugin (plugin API version 5) that lets a user connect only with a client
 * id of its own, the rule of broker/identity.py: the user's name, or its name followed by ':' and anything.
 * A client that sent no client id gets one from Mosquitto ("auto-" and a random UUID, clean session only),
 * which stays allowed.
 *
 * Mosquitto asks the MOSQ_EVT_BASIC_AUTH callbacks in the order they were registered, plugins first and the
 * password_file last (2.0.11: src/security.c mosquitto_unpwd_check, src/security_default.c), on every
 * listener when per_listener_settings is false, and before the CONNECT touches any session
 * (src/handle_connect.c: connect__on_authorised comes after). So a client id that is not the user's is
 * refused here (CONNACK "not authorized") and every other CONNECT is deferred to the password_file.
 *
 * Build: make -C broker/mosquitto_plugin (README, "Users, roles and TLS"); mosquitto.conf loads it.
 */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define SEPARATOR ':'
#define ASSIGNED_PREFIX "auto-"
#define ASSIGNED_UUID_LENGTH 36

static mosquitto_plugin_id_t *plugin_id;

/* Whether id has the form Mosquitto gives a client that sent none (default auto_id_prefix). */
static bool assigned_by_broker(const char *id, bool clean_session)
{
	size_t prefix = strlen(ASSIGNED_PREFIX);
	size_t i;

	if(!clean_session || strncmp(id, ASSIGNED_PREFIX, prefix) != 0 || strlen(id) != prefix + ASSIGNED_UUID_LENGTH){
		return false;
	}
	for(i = prefix; id[i] != '\0'; i++){
		size_t at = i - prefix;
		bool dash = at == 8 || at == 13 || at == 18 || at == 23;
		if(dash ? id[i] != '-' : !((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'A' && id[i] <= 'F'))){
			return false;
		}
	}
	return true;
}

/* The rule of broker/identity.py may_use_client_id. */
static bool owns(const char *user, const char *id)
{
	size_t length = strlen(user);

	return strncmp(id, user, length) == 0 && (id[length] == '\0' || id[length] == SEPARATOR);
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *auth = event_data;
	const char *id = mosquitto_client_id(auth->client);

	(void)event;
	(void)userdata;
	if(auth->username == NULL || id == NULL){
		return MOSQ_ERR_PLUGIN_DEFER; /* no user name: the password_file and allow_anonymous decide */
	}
	if(owns(auth->username, id) || assigned_by_broker(id, mosquitto_client_clean_session(auth->client))){
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	mosquitto_log_printf(MOSQ_LOG_WARNING,
			"user %s may not use client id '%s': it may use '%s' or '%s%c<anything>'; refused (not authorized) "
			"(from %s)", auth->username, id, auth->username, auth->username, SEPARATOR,
			mosquitto_client_address(auth->client));
	return MOSQ_ERR_AUTH;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	int i;

	for(i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5){
			return 5;
		}
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *options,
		int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;
	plugin_id = identifier;
	return mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;
	return mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
}
