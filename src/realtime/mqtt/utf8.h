// MQTT UTF-8 string validation (MQTT 3.1.1 §1.5.3).
//
// The spec requires every UTF-8 encoded string on the wire (client ids, topic names and
// filters, user names, will topics) to be well-formed UTF-8 per RFC 3629: no overlong forms,
// no code points above U+10FFFF, no UTF-16 surrogates U+D800..U+DFFF [MQTT-1.5.3-1], and no
// U+0000 [MQTT-1.5.3-2]. A receiver that sees a violation must close the connection.
// Control characters and non-characters are "SHOULD NOT" in the spec and are accepted here.
//
// Pure function; thread-safe.

#ifndef PERSONA_REALTIME_MQTT_UTF8_H_
#define PERSONA_REALTIME_MQTT_UTF8_H_

#include <string_view>

namespace persona::realtime::mqtt {

// True when `s` is well-formed UTF-8 containing no U+0000 and no surrogate code points.
// Does not check length limits (see ValidTopicName / the codec for the 65535-byte limit).
bool ValidMqttUtf8(std::string_view s);

}  // namespace persona::realtime::mqtt

#endif  // PERSONA_REALTIME_MQTT_UTF8_H_
