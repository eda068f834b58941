package control

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeRequest: the control socket's decoder takes any bytes a local client sends. It
// must never panic; a rejection is an error with a message; an accepted request is one of
// the known commands with a name exactly when the command takes one, a signal exactly
// for signal, and survives a JSON
// round trip unchanged. Seeds: testdata/fuzz/FuzzDecodeRequest and the f.Add lines.
func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range []string{
		`{"cmd":"status"}`, `{"cmd":"health"}`, `{"cmd":"restart","name":"egress"}`,
		`{"cmd":"stop","name":"a"}`, `{"cmd":"start","name":"b"}`, `{"cmd":"stop"}`,
		`{"cmd":"status","name":"x"}`, `not json`, `{}`, `[]`, `null`, `{"cmd":1}`,
		`{"cmd":"restart","name":"egress","extra":true}`,
		`{"cmd":"signal","name":"pipelock","signal":"HUP"}`, `{"cmd":"signal","name":"a"}`,
		`{"cmd":"signal","signal":"HUP"}`, `{"cmd":"stop","name":"a","signal":"HUP"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		req, err := DecodeRequest(line)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("a rejection without a message")
			}
			return
		}
		switch req.Cmd {
		case CmdStatus, CmdHealth:
			if req.Name != "" {
				t.Fatalf("%s accepted with a name: %+v", req.Cmd, req)
			}
		case CmdRestart, CmdStop, CmdStart, CmdSignal:
			if req.Name == "" {
				t.Fatalf("%s accepted without a name", req.Cmd)
			}
		default:
			t.Fatalf("unknown command accepted: %+v", req)
		}
		if (req.Cmd == CmdSignal) != (req.Signal != "") {
			t.Fatalf("%s accepted with signal %q: only signal takes one, and needs it", req.Cmd, req.Signal)
		}
		data, _ := json.Marshal(req)
		again, err := DecodeRequest(data)
		if err != nil || again != req {
			t.Fatalf("round trip of %+v gave %+v, %v", req, again, err)
		}
	})
}
