package dir

import "testing"

func TestSortedTypeMetaReadsOnlyTheTopLevel(t *testing.T) {
	for _, tc := range []struct {
		name, json string
		want       typeMeta
		ok         bool
	}{
		{"a Service", `{"apiVersion":"v1","kind":"Service","metadata":{"name":"a"}}`, typeMeta{"v1", "Service"}, true},
		{"an EndpointSlice, whose addressType and endpoints sort first",
			`{"addressType":"IPv4","apiVersion":"discovery.k8s.io/v1","endpoints":[{"addresses":["10.0.0.1"],"conditions":{"ready":true}}],"kind":"EndpointSlice","metadata":{"name":"a"}}`,
			typeMeta{"discovery.k8s.io/v1", "EndpointSlice"}, true},
		{"nested kinds are not the object's",
			`{"apiVersion":"v1","items":[{"kind":"Service"}],"kind":"List","x":{"apiVersion":"v2","kind":"Y"}}`, typeMeta{"v1", "List"}, true},
		{"strings holding brackets, commas and quotes are skipped whole",
			`{"a":"},{\"kind\":\"X\"","apiVersion":"v1","b":["]",","],"kind":"Service"}`, typeMeta{"v1", "Service"}, true},
		{"literals are skipped", `{"a":1,"apiVersion":"v1","b":true,"c":null,"kind":"Service"}`, typeMeta{"v1", "Service"}, true},
		{"no kind", `{"apiVersion":"v1","metadata":{}}`, typeMeta{}, false},
		{"no apiVersion", `{"kind":"Service"}`, typeMeta{}, false},
		{"a kind that is not a string", `{"apiVersion":"v1","kind":1}`, typeMeta{}, false},
		{"a kind with an escape", `{"apiVersion":"v1","kind":"Serv\u0069ce"}`, typeMeta{}, false},
		{"a key that encoding/json would also take for kind", `{"Kind":"Endpoints","apiVersion":"v1","kind":"Service"}`, typeMeta{}, false},
		{"an escaped key", `{"apiVersion":"v1","k\u0069nd":"Service"}`, typeMeta{}, false},
		{"not an object", `["apiVersion","kind"]`, typeMeta{}, false},
		{"cut short", `{"apiVersion":"v1","kind":"Serv`, typeMeta{}, false},
		{"empty", ``, typeMeta{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := sortedTypeMeta([]byte(tc.json))
			if ok != tc.ok || (ok && got != tc.want) {
				t.Fatalf("sortedTypeMeta(%s) = %+v, %v; want %+v, %v", tc.json, got, ok, tc.want, tc.ok)
			}
		})
	}
}
