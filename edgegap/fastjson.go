package edgegap

import (
	"encoding/json"
	"strconv"
)

// The session answers of the API (create, get, webhook) are decoded on every grant. These
// decoders read them without reflection, but only when the input is of a shape they know to
// decode exactly as encoding/json would: known member names spelled exactly, each at most once
// per object; strings of printable ASCII without escapes; integers without fraction or exponent
// that fit; the right JSON type for every field. Anything else — including every answer with a
// member these models do not have — makes them give up, and encoding/json decodes the input
// instead, so the result (value or error) is always encoding/json's. FuzzFastDecode compares
// the two.

// Unmarshal decodes data into out exactly as json.Unmarshal does (the same value, or an error
// where it fails), faster for the session models (*Session, *SessionCreated, *SessionSummary,
// *SessionCreateRequest) in the shapes Edgegap and the simulator send them. The client decodes
// every answer with it; the simulator decodes session creates with it.
func Unmarshal(data []byte, out any) error { return decodeJSON(data, out) }

// decodeJSON decodes data into out like json.Unmarshal, through a fast decoder when out is one
// of the session models and data has a shape it takes.
func decodeJSON(data []byte, out any) error {
	switch v := out.(type) {
	case *SessionCreateRequest:
		var s SessionCreateRequest
		if r := (jsonReader{b: data}); r.sessionCreateRequest(&s) && r.end() {
			*v = s
			return nil
		}
	case *Session:
		var s Session
		if r := (jsonReader{b: data}); r.session(&s) && r.end() {
			*v = s
			return nil
		}
	case *SessionCreated:
		var s SessionCreated
		if r := (jsonReader{b: data}); r.sessionCreated(&s) && r.end() {
			*v = s
			return nil
		}
	case *SessionSummary:
		var s SessionSummary
		if r := (jsonReader{b: data}); r.sessionSummary(&s) && r.end() {
			*v = s
			return nil
		}
	}
	return json.Unmarshal(data, out)
}

// jsonReader reads one JSON value from b. Its methods return false (and set bad) for input the
// fast path does not take. The strings it decodes share one copy of b (made at the first).
type jsonReader struct {
	b    []byte
	i    int
	bad  bool
	text string // string(b), once a string was decoded
}

func (r *jsonReader) fail() bool {
	r.bad = true
	return false
}

// peek skips white space and returns the next byte (0 at the end).
func (r *jsonReader) peek() byte {
	for r.i < len(r.b) {
		switch c := r.b[r.i]; c {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return c
		}
	}
	return 0
}

// eat consumes c if it is the next byte.
func (r *jsonReader) eat(c byte) bool {
	if r.peek() == c {
		r.i++
		return true
	}
	return false
}

// end reports whether nothing but white space follows (and nothing went wrong).
func (r *jsonReader) end() bool {
	return !r.bad && r.peek() == 0 && r.i == len(r.b)
}

// literal consumes the literal lit (true, false, null) if it comes next.
func (r *jsonReader) literal(lit string) bool {
	if r.peek() != lit[0] {
		return false
	}
	if len(r.b)-r.i < len(lit) || string(r.b[r.i:r.i+len(lit)]) != lit {
		return r.fail()
	}
	r.i += len(lit)
	return true
}

// null consumes a null if it comes next. encoding/json leaves a field alone for null (a nil
// pointer, slice or map stays nil), and every field here starts zero and is seen once.
func (r *jsonReader) null() bool { return !r.bad && r.literal("null") }

// rawString reads a string of printable ASCII without escapes and returns its bytes.
func (r *jsonReader) rawString() ([]byte, bool) {
	if !r.eat('"') {
		return nil, r.fail()
	}
	start := r.i
	for ; r.i < len(r.b); r.i++ {
		switch c := r.b[r.i]; {
		case c == '"':
			s := r.b[start:r.i]
			r.i++
			return s, true
		case c < 0x20 || c >= 0x80 || c == '\\':
			return nil, r.fail()
		}
	}
	return nil, r.fail()
}

func (r *jsonReader) str(dst *string) bool {
	s, ok := r.rawString()
	if ok {
		if r.text == "" {
			r.text = string(r.b)
		}
		end := r.i - 1 // the closing quote
		*dst = r.text[end-len(s) : end]
	}
	return ok
}

func (r *jsonReader) strPtr(dst **string) bool {
	if r.null() {
		return true
	}
	var s string
	if !r.str(&s) {
		return false
	}
	*dst = &s
	return true
}

func (r *jsonReader) boolean(dst *bool) bool {
	switch {
	case r.literal("true"):
		*dst = true
	case r.literal("false"):
		*dst = false
	default:
		return r.fail()
	}
	return !r.bad
}

func (r *jsonReader) boolPtr(dst **bool) bool {
	if r.null() {
		return true
	}
	var b bool
	if !r.boolean(&b) {
		return false
	}
	*dst = &b
	return true
}

// number reads a JSON number and returns its text; frac reports a fraction or exponent.
func (r *jsonReader) number() (lit []byte, frac bool, ok bool) {
	r.peek()
	start := r.i
	digits := func() int {
		n := 0
		for r.i < len(r.b) && r.b[r.i] >= '0' && r.b[r.i] <= '9' {
			r.i++
			n++
		}
		return n
	}
	if r.i < len(r.b) && r.b[r.i] == '-' {
		r.i++
	}
	if r.i < len(r.b) && r.b[r.i] == '0' {
		r.i++
	} else if digits() == 0 {
		return nil, false, r.fail()
	}
	if r.i < len(r.b) && r.b[r.i] == '.' {
		r.i++
		frac = true
		if digits() == 0 {
			return nil, false, r.fail()
		}
	}
	if r.i < len(r.b) && (r.b[r.i] == 'e' || r.b[r.i] == 'E') {
		r.i++
		frac = true
		if r.i < len(r.b) && (r.b[r.i] == '+' || r.b[r.i] == '-') {
			r.i++
		}
		if digits() == 0 {
			return nil, false, r.fail()
		}
	}
	return r.b[start:r.i], frac, true
}

// integer reads an integer of at most 18 digits (encoding/json refuses a fraction or exponent
// for an int field, and 18 digits cannot overflow).
func (r *jsonReader) integer(dst *int) bool {
	lit, frac, ok := r.number()
	if !ok || frac || len(lit) > 19 || (len(lit) == 19 && lit[0] != '-') {
		return r.fail()
	}
	n, neg := 0, false
	for _, c := range lit {
		if c == '-' {
			neg = true
			continue
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	*dst = n
	return true
}

func (r *jsonReader) intPtr(dst **int) bool {
	if r.null() {
		return true
	}
	var n int
	if !r.integer(&n) {
		return false
	}
	*dst = &n
	return true
}

// float reads a number as encoding/json does for a float64 (strconv.ParseFloat of its text).
func (r *jsonReader) float(dst *float64) bool {
	lit, _, ok := r.number()
	if !ok {
		return false
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil {
		return r.fail()
	}
	*dst = f
	return true
}

func (r *jsonReader) floatPtr(dst **float64) bool {
	if r.null() {
		return true
	}
	var f float64
	if !r.float(&f) {
		return false
	}
	*dst = &f
	return true
}

// object reads an object, handing each member's name to member, which reads the value (and
// returns false for a name it does not take). The members of a struct mark themselves in a
// set of bits (once): a repeated member (which encoding/json would merge into the first)
// makes the reader give up.
func (r *jsonReader) object(member func(name []byte) bool) bool {
	if !r.eat('{') {
		return r.fail()
	}
	if r.eat('}') {
		return true
	}
	for {
		name, ok := r.rawString()
		if !ok || !r.eat(':') || !member(name) || r.bad {
			return r.fail()
		}
		if r.eat(',') {
			continue
		}
		if r.eat('}') {
			return true
		}
		return r.fail()
	}
}

// once marks member bit in seen; false if it was there already.
func once(seen *uint32, bit uint32) bool {
	if *seen&bit != 0 {
		return false
	}
	*seen |= bit
	return true
}

// array reads an array, calling elem for each element.
func (r *jsonReader) array(elem func() bool) bool {
	if !r.eat('[') {
		return r.fail()
	}
	if r.eat(']') {
		return true
	}
	for {
		if !elem() || r.bad {
			return r.fail()
		}
		if r.eat(',') {
			continue
		}
		if r.eat(']') {
			return true
		}
		return r.fail()
	}
}

func (r *jsonReader) session(s *Session) bool {
	var bits uint32
	seen := &bits
	return r.object(func(name []byte) bool {
		switch string(name) {
		case "session_id":
			return once(seen, 1<<0) && (r.null() || r.str(&s.SessionID))
		case "custom_id":
			return once(seen, 1<<1) && r.strPtr(&s.CustomID)
		case "status":
			return once(seen, 1<<2) && (r.null() || r.str(&s.Status))
		case "ready":
			return once(seen, 1<<3) && (r.null() || r.boolean(&s.Ready))
		case "linked":
			return once(seen, 1<<4) && (r.null() || r.boolean(&s.Linked))
		case "kind":
			return once(seen, 1<<5) && (r.null() || r.str(&s.Kind))
		case "user_count":
			return once(seen, 1<<6) && (r.null() || r.integer(&s.UserCount))
		case "app_version":
			return once(seen, 1<<7) && (r.null() || r.integer(&s.AppVersion))
		case "create_time":
			return once(seen, 1<<8) && (r.null() || r.str(&s.CreateTime))
		case "elapsed":
			return once(seen, 1<<9) && (r.null() || r.integer(&s.Elapsed))
		case "error":
			return once(seen, 1<<10) && r.strPtr(&s.Error)
		case "session_users":
			return once(seen, 1<<11) && r.sessionUsers(&s.SessionUsers)
		case "session_ips":
			return once(seen, 1<<12) && r.sessionUsers(&s.SessionIPs)
		case "deployment":
			if !once(seen, 1<<13) {
				return false
			}
			if r.null() {
				return true
			}
			s.Deployment = new(Deployment)
			return r.deployment(s.Deployment)
		case "webhook_url":
			return once(seen, 1<<14) && r.strPtr(&s.WebhookURL)
		}
		return false
	})
}

// strList reads an array of strings (null leaves *dst alone, a null element is "") as
// encoding/json does into a []string: a new non-nil slice, even when empty.
func (r *jsonReader) strList(dst *[]string) bool {
	if r.null() {
		return true
	}
	list := []string{}
	ok := r.array(func() bool {
		var v string
		if !r.null() && !r.str(&v) {
			return false
		}
		list = append(list, v)
		return true
	})
	*dst = list
	return ok
}

func (r *jsonReader) sessionUsers(dst *[]SessionUser) bool {
	if r.null() {
		return true
	}
	users := []SessionUser{}
	ok := r.array(func() bool {
		var u SessionUser
		var bits uint32
		seen := &bits
		if !r.null() && !r.object(func(name []byte) bool {
			switch string(name) {
			case "ip":
				return once(seen, 1<<0) && (r.null() || r.str(&u.IP))
			case "latitude":
				return once(seen, 1<<1) && r.floatPtr(&u.Latitude)
			case "longitude":
				return once(seen, 1<<2) && r.floatPtr(&u.Longitude)
			}
			return false
		}) {
			return false
		}
		users = append(users, u)
		return true
	})
	*dst = users
	return ok
}

func (r *jsonReader) deployment(d *Deployment) bool {
	var bits uint32
	seen := &bits
	return r.object(func(name []byte) bool {
		switch string(name) {
		case "request_id":
			return once(seen, 1<<0) && (r.null() || r.str(&d.RequestID))
		case "public_ip":
			return once(seen, 1<<1) && (r.null() || r.str(&d.PublicIP))
		case "status":
			return once(seen, 1<<2) && (r.null() || r.str(&d.Status))
		case "ready":
			return once(seen, 1<<3) && (r.null() || r.boolean(&d.Ready))
		case "whitelisting_active":
			return once(seen, 1<<4) && (r.null() || r.boolean(&d.WhitelistingActive))
		case "fqdn":
			return once(seen, 1<<5) && (r.null() || r.str(&d.FQDN))
		case "ports":
			return once(seen, 1<<6) && r.ports(&d.Ports)
		case "location":
			if !once(seen, 1<<7) {
				return false
			}
			if r.null() {
				return true
			}
			d.Location = new(DeploymentLocation)
			return r.location(d.Location)
		case "tags":
			return once(seen, 1<<8) && r.strList(&d.Tags)
		case "sockets":
			return once(seen, 1<<9) && r.intPtr(&d.Sockets)
		case "sockets_usage":
			return once(seen, 1<<10) && r.intPtr(&d.SocketsUsage)
		case "is_joinable_by_session":
			return once(seen, 1<<11) && r.boolPtr(&d.IsJoinableBySession)
		}
		return false
	})
}

// ports reads the ports object. A name given twice is decoded twice by encoding/json, the
// second value replacing the first: so here too.
func (r *jsonReader) ports(dst *map[string]PortMapping) bool {
	if r.null() {
		return true
	}
	ports := map[string]PortMapping{}
	*dst = ports
	return r.object(func(name []byte) bool {
		var p PortMapping
		var bits uint32
		seen := &bits
		if !r.null() && !r.object(func(field []byte) bool {
			switch string(field) {
			case "external":
				return once(seen, 1<<0) && r.intPtr(&p.External)
			case "internal":
				return once(seen, 1<<1) && r.intPtr(&p.Internal)
			case "protocol":
				return once(seen, 1<<2) && r.strPtr(&p.Protocol)
			case "name":
				return once(seen, 1<<3) && r.strPtr(&p.Name)
			case "tls_upgrade":
				return once(seen, 1<<4) && r.boolPtr(&p.TLSUpgrade)
			case "link":
				return once(seen, 1<<5) && r.strPtr(&p.Link)
			case "proxy":
				return once(seen, 1<<6) && r.intPtr(&p.Proxy)
			}
			return false
		}) {
			return false
		}
		ports[string(name)] = p
		return true
	})
}

func (r *jsonReader) location(l *DeploymentLocation) bool {
	var bits uint32
	seen := &bits
	return r.object(func(name []byte) bool {
		switch string(name) {
		case "city":
			return once(seen, 1<<0) && (r.null() || r.str(&l.City))
		case "country":
			return once(seen, 1<<1) && (r.null() || r.str(&l.Country))
		case "continent":
			return once(seen, 1<<2) && (r.null() || r.str(&l.Continent))
		case "administrative_division":
			return once(seen, 1<<3) && (r.null() || r.str(&l.AdministrativeDivision))
		case "timezone":
			return once(seen, 1<<4) && (r.null() || r.str(&l.Timezone))
		case "latitude":
			return once(seen, 1<<5) && (r.null() || r.float(&l.Latitude))
		case "longitude":
			return once(seen, 1<<6) && (r.null() || r.float(&l.Longitude))
		}
		return false
	})
}

func (r *jsonReader) sessionCreated(s *SessionCreated) bool {
	var bits uint32
	seen := &bits
	return r.object(func(name []byte) bool {
		switch string(name) {
		case "session_id":
			return once(seen, 1<<0) && (r.null() || r.str(&s.SessionID))
		case "custom_id":
			return once(seen, 1<<1) && r.strPtr(&s.CustomID)
		case "app":
			return once(seen, 1<<2) && (r.null() || r.str(&s.App))
		case "version":
			return once(seen, 1<<3) && (r.null() || r.str(&s.Version))
		case "deployment_request_id":
			return once(seen, 1<<4) && r.strPtr(&s.DeploymentRequestID)
		case "selectors":
			return once(seen, 1<<5) && r.null() // selectors: encoding/json's business
		case "webhook_url":
			return once(seen, 1<<6) && r.strPtr(&s.WebhookURL)
		}
		return false
	})
}

func (r *jsonReader) sessionSummary(s *SessionSummary) bool {
	var bits uint32
	seen := &bits
	return r.object(func(name []byte) bool {
		switch string(name) {
		case "session_id":
			return once(seen, 1<<0) && (r.null() || r.str(&s.SessionID))
		case "custom_id":
			return once(seen, 1<<1) && r.strPtr(&s.CustomID)
		case "status":
			return once(seen, 1<<2) && (r.null() || r.str(&s.Status))
		case "ready":
			return once(seen, 1<<3) && (r.null() || r.boolean(&s.Ready))
		case "linked":
			return once(seen, 1<<4) && (r.null() || r.boolean(&s.Linked))
		case "kind":
			return once(seen, 1<<5) && (r.null() || r.str(&s.Kind))
		case "user_count":
			return once(seen, 1<<6) && (r.null() || r.integer(&s.UserCount))
		case "deployment_request_id":
			return once(seen, 1<<7) && r.strPtr(&s.DeploymentRequestID)
		case "webhook_url":
			return once(seen, 1<<8) && r.strPtr(&s.WebhookURL)
		}
		return false
	})
}

// sessionCreateRequest reads a create as the matchmaker sends it; the members it does not
// decode itself (geo IPs, location, selectors, filters) must be null.
func (r *jsonReader) sessionCreateRequest(s *SessionCreateRequest) bool {
	var bits uint32
	seen := &bits
	return r.object(func(name []byte) bool {
		switch string(name) {
		case "app_name":
			return once(seen, 1<<0) && (r.null() || r.str(&s.AppName))
		case "version_name":
			return once(seen, 1<<1) && (r.null() || r.str(&s.VersionName))
		case "ip_list":
			return once(seen, 1<<2) && r.strList(&s.IPList)
		case "deployment_request_id":
			return once(seen, 1<<3) && (r.null() || r.str(&s.DeploymentRequestID))
		case "city":
			return once(seen, 1<<4) && (r.null() || r.str(&s.City))
		case "country":
			return once(seen, 1<<5) && (r.null() || r.str(&s.Country))
		case "continent":
			return once(seen, 1<<6) && (r.null() || r.str(&s.Continent))
		case "administrative_division":
			return once(seen, 1<<7) && (r.null() || r.str(&s.AdministrativeDivision))
		case "region":
			return once(seen, 1<<8) && (r.null() || r.str(&s.Region))
		case "webhook_url":
			return once(seen, 1<<9) && (r.null() || r.str(&s.WebhookURL))
		case "skip_telemetry":
			return once(seen, 1<<10) && r.boolPtr(&s.SkipTelemetry)
		case "geo_ip_list", "location", "selectors", "filters":
			return r.null() // encoding/json's business; a repeated null changes nothing
		}
		return false
	})
}
